"""Baselines (registry kind ``baselines``): forward/backward/no-NaN for every registered one, a real short
``lightning.Trainer`` fit on tiny data, checkpoint round trip through ``load_baseline``, LDM samplers."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rvar.inference import load_baseline
from rvar.nn import count_parameters
from rvar.nn.checkpoints import load_checkpoint, save_checkpoint
from rvar.registry import BASELINES
from rvar_plugins.baselines.dit import DenoiserConfig, LatentDiT, denoiser_parameters
from rvar_plugins.baselines.ldm import LatentDiffusionRestorer
from rvar_plugins.baselines.nafnet import NAFNet, NAFNetConfig

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY_VAE = str(FIXTURES / "tiny_vae.pth")


def make(name: str):
    """A tiny instance of each registered baseline (the LDM on the tiny reference tokenizer)."""
    if name == "ldm":
        return LatentDiffusionRestorer(tokenizer_ckpt=TINY_VAE, tokenizer_preset="tiny", sampling_steps=2)
    return BASELINES.get(name)()


def batch(size: int = 64, n: int = 2):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(n, 3, size, size, generator=g)
    return {"degraded": (clean * 0.7 + 0.1).clamp(0, 1), "clean": clean, "degradation": ["haze"] * n,
            "index": torch.arange(n)}


class TinyPairs(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        clean = torch.rand(3, 64, 64, generator=g)
        return {"degraded": clean * 0.5, "clean": clean, "degradation": "low_light", "index": i}


def test_both_baselines_are_registered():
    assert {"ldm", "nafnet"} <= set(BASELINES.list())


@pytest.mark.parametrize("name", BASELINES.list())
def test_forward_backward_no_nan(name):
    module = make(name).train()
    loss = module.training_loss(batch())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in module.parameters() if not p.requires_grad)  # the LDM's tokenizer is frozen
    out = module.eval().restore_images(batch()["degraded"], steps=2)
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name", BASELINES.list())
def test_short_trainer_fit_and_checkpoint_round_trip(name, tmp_path):
    module = make(name)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                        default_root_dir=tmp_path)
    loader = DataLoader(TinyPairs(), batch_size=2)
    trainer.fit(module, loader, loader)
    assert "val/psnr" in trainer.callback_metrics and "val/ssim" in trainer.callback_metrics
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    ckpt = load_checkpoint(path, kinds=["baseline"])  # the rvar keys sit next to Lightning's
    assert ckpt["model"]["class_path"] == f"{type(module).__module__}.{type(module).__qualname__}"
    rebuilt = load_baseline(ckpt, str(path))
    assert type(rebuilt) is type(module)
    for key, value in module.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key
    x = batch()["degraded"]
    assert torch.allclose(module.eval().restore_images(x, steps=2), rebuilt.restore_images(x, steps=2))
    # the same through save_checkpoint (no Lightning)
    plain = save_checkpoint(tmp_path / "plain.pth", rebuilt, {"test": True})
    again = load_baseline(load_checkpoint(plain), str(plain))
    assert torch.allclose(again.restore_images(x, steps=2), rebuilt.restore_images(x, steps=2))


@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver"])
@pytest.mark.parametrize("steps", [2, 3])
def test_ldm_samplers(sampler, steps):
    module = make("ldm").eval()
    out = module.restore_images(batch()["degraded"], steps=steps, sampler=sampler)
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()
    scheduler = module.sampling_scheduler(sampler)
    scheduler.set_timesteps(steps)
    assert len(scheduler.timesteps) == steps


@pytest.mark.parametrize("conditioning", ["concat", "cross"])
def test_dit_conditioning_changes_output_and_parameter_matching(conditioning):
    config = DenoiserConfig.tiny(conditioning)
    model = LatentDiT(config)
    for p in model.parameters():  # move away from the zero init so the condition matters
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 32, 4, 4)
    t = torch.tensor([10, 900])
    assert not torch.allclose(model(x, t, torch.zeros_like(x)), model(x, t, torch.ones_like(x)))
    assert denoiser_parameters(config) == count_parameters(model)
    if conditioning == "concat":  # the preset matches the tiny prior's 678,379 parameters within 10 %
        assert abs(denoiser_parameters(config) / 678_379 - 1) < 0.1


def test_nafnet_any_size():
    net = NAFNet(NAFNetConfig.tiny())
    for height, width in ((37, 50), (64, 64), (3, 5)):  # padded to a multiple of 4, then cropped back
        x = torch.rand(1, 3, height, width)
        out = net(x)
        assert out.shape == x.shape and torch.isfinite(out).all()
