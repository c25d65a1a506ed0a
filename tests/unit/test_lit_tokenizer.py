"""TokenizerModule details that the 2-step fits do not reach: the adversarial (manual optimisation) path and
what the checkpoint payload holds."""
from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from rvar.errors import UserError
from rvar.lit import TokenizerModule
from rvar.nn.checkpoints import checkpoint_entries, load_checkpoint, save_checkpoint
from rvar.nn.tokenizer import TokenizerConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def batches(steps: int):
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sample = {"degraded": clean, "clean": clean, "degradation": ["none", "none"], "index": torch.arange(2)}
    return DataLoader([sample] * steps, batch_size=None)


def test_gan_term_trains_both_networks(tmp_path):
    torch.manual_seed(0)
    module = TokenizerModule(TokenizerConfig.tiny(), gan_weight=0.1, gan_start_step=1)
    assert not module.automatic_optimization
    d_before = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    g_before = module.tokenizer.decoder.conv_out.weight.clone()
    trainer = L.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=batches(3))  # 3 batches: 1 warm-up + 2 adversarial (= 5 steps)
    assert not torch.equal(g_before, module.tokenizer.decoder.conv_out.weight)
    assert any(not torch.equal(v, module.discriminator.state_dict()[k]) for k, v in d_before.items())
    assert torch.isfinite(trainer.callback_metrics["train/discriminator_gan"])
    entries = checkpoint_entries(module, module.rvar_meta())
    assert entries["kind"] == "tokenizer" and entries["meta"]["mode"] == "full"
    assert entries["model"] == {"class_path": "rvar.nn.tokenizer.VQVAE",
                                "init_args": {"config": TokenizerConfig.tiny().to_dict()}}
    path = save_checkpoint(tmp_path / "tokenizer.ckpt", module)
    assert all(k.startswith("tokenizer.") for k in load_checkpoint(path)["state_dict"])  # no discriminator


def test_codebook_is_drawn_from_data_and_dead_codes_restart(tmp_path):
    torch.manual_seed(0)
    module = TokenizerModule(TokenizerConfig.tiny(), codebook_restart_every=1)
    codebook_before = module.tokenizer.quantize.embedding.weight.detach().clone()
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=batches(2))
    codebook = module.tokenizer.quantize.embedding.weight.detach()
    assert torch.isfinite(codebook).all()
    assert (codebook - codebook_before).abs().amax(1).gt(1e-3).all()  # every code was re-drawn at the start
    assert "train/codes_restarted" in trainer.callback_metrics


def test_decoder_mode_freezes_encoder_and_quantizer():
    module = TokenizerModule(TokenizerConfig.tiny(), mode="decoder")
    trainable = {name.split(".")[1] for name, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"decoder", "post_quant_conv"}
    module.train()
    assert not module.tokenizer.encoder.training and module.tokenizer.decoder.training
    assert module.rvar_meta()["decoder"] == "finetuned"


@pytest.mark.parametrize("kwargs", [{}, {"tokenizer": TokenizerConfig.tiny(), "mode": "encoder"}])
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserError):
        TokenizerModule(**kwargs)
