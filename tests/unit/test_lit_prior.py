"""PriorModule: it can overfit one batch, its tokenizer stays frozen, its prior takes the tokenizer's token
geometry, a prior that does not fit the tokenizer is a one-line UserError naming both sides, and data crops
that are not the tokenizer's image size stop the stage before any batch."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from rvar.errors import UserError
from rvar.lit import PriorModule, TokenizerModule
from rvar.nn.checkpoints import checkpoint_entries, save_checkpoint
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.tokenizer import VQVAE, TokenizerConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("prior") / "tokenizer.ckpt"
    return str(save_checkpoint(path, VQVAE(TokenizerConfig.tiny())))


class LossHistory(L.Callback):
    def __init__(self) -> None:
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def fixed_batches(steps: int):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 64, 64, generator=g)
    sample = {"degraded": (clean * 0.5).contiguous(), "clean": clean, "degradation": ["low_light", "low_light"],
              "index": torch.arange(2)}
    return DataLoader([sample] * steps, batch_size=None)


def test_prior_overfits_one_batch(tokenizer_ckpt, tmp_path):
    torch.manual_seed(0)
    module = PriorModule(tokenizer_ckpt, PriorConfig.tiny(),
                         optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    history = LossHistory()
    trainer = L.Trainer(accelerator="cpu", max_steps=30, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=str(tmp_path), callbacks=[history])
    frozen_before = {k: v.clone() for k, v in module.tokenizer.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=fixed_batches(30))
    losses = history.losses
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert all(torch.equal(v, module.tokenizer.state_dict()[k]) for k, v in frozen_before.items())
    optimizer = trainer.optimizers[0]
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for p in module.tokenizer.parameters()}


@pytest.mark.parametrize("field, value", [("vocab_size", 128), ("patch_nums", (1, 2, 4)), ("z_channels", 16)])
def test_prior_must_fit_the_tokenizer(tokenizer_ckpt, field, value):
    config = PriorConfig.tiny()
    setattr(config, field, tuple(value) if isinstance(value, tuple) else value)
    with pytest.raises(UserError) as info:
        PriorModule(tokenizer_ckpt, config)
    message = str(info.value)
    assert field in message and "prior" in message and "tokenizer" in message and "\n" not in message


def test_prior_takes_the_tokenizer_geometry(tokenizer_ckpt):
    module = PriorModule(tokenizer_ckpt, PriorConfig(depth=2, embed_dim=128, num_heads=2))
    tokenizer = module.tokenizer.config
    assert module.prior.config == PriorConfig.for_tokenizer(tokenizer, depth=2, embed_dim=128, num_heads=2)
    assert (module.prior.config.patch_nums, module.prior.config.vocab_size) == (tokenizer.patch_nums, 64)
    model = checkpoint_entries(module)["model"]  # checkpoints keep the geometry
    assert model["init_args"]["prior"]["patch_nums"] == list(tokenizer.patch_nums) and model["init_args"]["refiner"] is None


def test_geometry_check_names_both_values():
    with pytest.raises(UserError) as info:
        PriorConfig.for_tokenizer(TokenizerConfig.tiny(), "t.ckpt", depth=2, embed_dim=128, num_heads=2,
                                  patch_nums=[1, 2, 3, 4], vocab_size=128)
    assert str(info.value) == "t.ckpt: the prior does not fit the tokenizer: vocab_size 128 (prior) vs 64 (tokenizer)"
    with pytest.raises(ValueError, match="for_tokenizer"):
        RestoreVARPrior(PriorConfig(depth=2, embed_dim=128, num_heads=2))


@pytest.mark.parametrize("crop, mode, fails", [(32, "prior", True), (64, "prior", False), (32, "decoder", False)])
def test_crop_size_must_be_the_tokenizer_image_size(tokenizer_ckpt, crop, mode, fails):
    module = (PriorModule(tokenizer_ckpt, PriorConfig.tiny()) if mode == "prior"
              else TokenizerModule(init_from=tokenizer_ckpt, mode="decoder"))  # the decoder takes any size
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(crop_size=crop))
    if fails:
        with pytest.raises(UserError, match=r"crop_size 32 .* image size 64 \(patch_nums\[-1\] 4 x downsampling 16\)"):
            module.setup("fit")
    else:
        module.setup("fit")


def test_prior_needs_sizes_or_init(tokenizer_ckpt):
    with pytest.raises(UserError, match="prior"):
        PriorModule(tokenizer_ckpt)


def test_decoding_travels_from_the_prior_stage_to_the_restorer(tokenizer_ckpt, tmp_path):
    """``PriorModule(decoding=...)`` is written into the prior checkpoint; the refiner stage and the restorer it
    exports follow it unless ``RefinerModule(prior_decoding=...)`` says otherwise."""
    from rvar.lit import RefinerModule
    from rvar.nn.checkpoints import build_restorer, load_checkpoint

    module = PriorModule(tokenizer_ckpt, PriorConfig.tiny(), decoding="expected")
    assert module.prior.config.decoding == "expected"
    path = save_checkpoint(tmp_path / "prior.ckpt", _restorer_of(module))
    kw = dict(refiner_dim=32, refiner_depth=1, refiner_heads=2, refiner_mlp_dim=32)
    follows = RefinerModule(str(path), **kw)
    assert follows.prior.config.decoding == "expected"
    told = RefinerModule(str(path), prior_decoding="greedy", **kw)
    assert told.prior.config.decoding == "greedy"
    restorer = build_restorer(load_checkpoint(save_checkpoint(tmp_path / "r.ckpt", _restorer_of(told, refiner=True))),
                              "r.ckpt")
    assert restorer.prior.config.decoding == "greedy"
    with pytest.raises(UserError, match="prior decoding 'mode' is not one of"):
        RefinerModule(str(path), prior_decoding="mode", **kw)


def _restorer_of(module, refiner: bool = False):
    from rvar.nn.restorer import Restorer

    return Restorer.from_networks(module.tokenizer, module.prior, module.refiner if refiner else None)
