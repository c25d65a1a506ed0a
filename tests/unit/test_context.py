"""Whole-image context for the refiner (issue #11): a 64 px tile of a night sky and a low-light tile look alike,
so the refiner may also read the whole degraded image at the native size. Trained on tiles of degraded regions
(``data.context_size``), given the whole photo beside its tiles at restore time (``rvar.inference``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rvar.data.datamodule import DegradationDataModule
from rvar.errors import UserError
from rvar.inference import baseline_fn, restorer_fn, run_tiled
from rvar.nn.checkpoints import save_checkpoint
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.refiner import RefinerConfig
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import VQVAE, TokenizerConfig
from rvar.pixels import whole_image_context

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _restorer(context: bool) -> Restorer:
    torch.manual_seed(0)
    tok = TokenizerConfig.cpu_f8()
    prior = PriorConfig.tiny(patch_nums=tok.patch_nums, vocab_size=tok.vocab_size)
    refiner = RefinerConfig.for_prior(prior, dim=32, depth=1, heads=2, mlp_dim=32, in_dim_degraded=32,
                                      residual_from_degraded=True, in_dim_context=32 if context else 0)
    restorer = Restorer(tok, prior, refiner).eval()
    torch.nn.init.normal_(restorer.refiner.proj_out.weight, std=0.05)  # a trained refiner's residual is not zero
    return restorer


def test_a_context_refiner_needs_context_and_uses_it():
    refiner = _restorer(True).refiner
    x = torch.randn(2, 64, 32)
    cond = torch.randn(2, refiner.config.seq_len_cond, 128)
    with pytest.raises(ValueError, match="whole-image context"):
        refiner(x, cond, x)
    a, b = refiner(x, cond, x, torch.randn(2, 64, 32)), refiner(x, cond, x, torch.randn(2, 64, 32))
    assert a.shape == x.shape and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="takes no whole-image context"):
        _restorer(False).refiner(x, cond, x, torch.randn(2, 64, 32))


def test_restore_without_context_treats_the_input_as_the_whole_image():
    restorer = _restorer(True)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    other = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    alone, itself = restorer.restore(x).image, restorer.restore(x, context_B3HW=x).image
    assert torch.allclose(alone, itself, atol=1e-5)
    assert not torch.allclose(alone, restorer.restore(x, context_B3HW=other).image, atol=1e-4)


def test_tiling_gives_every_tile_the_whole_image():
    restorer = _restorer(True)
    fn = restorer_fn(restorer)
    assert fn.takes_context and not restorer_fn(_restorer(False)).takes_context
    seen = []

    def recording(tiles, context=None):
        seen.append(context)
        return fn(tiles, context=context)

    recording.takes_context = True
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(3))
    out = run_tiled(recording, image, 64, batch_size=4)
    assert out.shape == image.shape and seen
    expected = whole_image_context(image[None], 64)
    assert all(c is not None and torch.allclose(c, expected) for c in seen)


def _photo(folder, size=300):
    folder.mkdir(parents=True)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], -1)
    Image.fromarray(image.astype(np.uint8)).save(folder / "photo.png")
    return torch.from_numpy(image.astype(np.uint8)).permute(2, 0, 1).float() / 255


def test_datamodule_cuts_tiles_out_of_degraded_regions(tmp_path):
    photo = _photo(tmp_path / "train")
    (tmp_path / "val").mkdir()
    Image.open(tmp_path / "train" / "photo.png").save(tmp_path / "val" / "photo.png")
    dm = DegradationDataModule(train_dirs=[str(tmp_path / "train")], val_dirs=[str(tmp_path / "val")], crop_size=64,
                               batch_size=3, context_size=256, samples_per_epoch=6, val_samples=1,
                               degradations=[{"name": "low_light"}, {"name": "haze"}])
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())))
    assert batch["degraded"].shape == batch["clean"].shape == batch["context"].shape == (3, 3, 64, 64)
    assert "tile" not in batch
    val = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())))
    # validation: the centre 256 px region, its centre 64 px tile
    top = (300 - 256) // 2 + (256 - 64) // 2
    assert torch.allclose(val["clean"][0], photo[:, top:top + 64, top:top + 64], atol=1e-6)
    assert val["context"].shape == (1, 3, 64, 64)


def test_context_size_mistakes_are_one_line_errors(tmp_path):
    _photo(tmp_path / "train")
    dm = DegradationDataModule(train_dirs=[str(tmp_path / "train")], crop_size=64, context_size=32)
    with pytest.raises(UserError, match="context_size 32 is smaller than data.crop_size 64"):
        dm.setup("fit")


def test_refiner_module_without_context_data_says_what_to_set(tmp_path):
    from rvar.lit.refiner import RefinerModule

    tok = TokenizerConfig.cpu_f8()
    path = save_checkpoint(tmp_path / "prior.ckpt", Restorer.from_networks(
        VQVAE(tok), RestoreVARPrior(PriorConfig.tiny(patch_nums=tok.patch_nums, vocab_size=tok.vocab_size))))
    module = RefinerModule(str(path), refiner_dim=32, refiner_depth=1, refiner_heads=2, refiner_mlp_dim=32,
                           condition_on_degraded=True, residual_from_degraded=True, whole_image_context=True)
    module.log_metric = lambda *a, **k: None
    batch = {"degraded": torch.rand(2, 3, 64, 64), "clean": torch.rand(2, 3, 64, 64), "degradation": ["haze"] * 2}
    with pytest.raises(UserError, match="set data.init_args.context_size"):
        module._shared_step(batch, "train")
    loss = module._shared_step({**batch, "context": torch.rand(2, 3, 64, 64)}, "train")
    assert torch.isfinite(loss)


def test_the_ldm_baseline_reads_the_same_whole_image_context():
    from rvar_plugins.baselines.dit import DenoiserConfig
    from rvar_plugins.baselines.ldm import LatentDiffusionRestorer

    torch.manual_seed(0)
    ldm = LatentDiffusionRestorer(tokenizer_preset="tiny", denoiser=DenoiserConfig(z_channels=32, context=True),
                                  sampling_steps=2, prediction_type="sample", residual_on_condition=True).eval()
    for block in ldm.denoiser.blocks:  # a trained denoiser's blocks are not identities
        torch.nn.init.normal_(block.adaLN_modulation[-1].bias, std=0.5)
    torch.nn.init.normal_(ldm.denoiser.final.linear.weight, std=0.1)
    bfn = baseline_fn(ldm)
    assert bfn.takes_context
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    other = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(bfn(x), bfn(x, context=x), atol=1e-5)
    assert not torch.allclose(bfn(x), bfn(x, context=other), atol=1e-4)
    batch = {"degraded": x, "clean": x}
    with pytest.raises(UserError, match="set data.init_args.context_size"):
        ldm.train().training_loss(batch)
    assert torch.isfinite(ldm.training_loss({**batch, "context": other.expand(2, -1, -1, -1)}))


def test_batch_stage_in_workers_gives_the_same_batches(tmp_path):
    """data.batch_stage workers runs the batched degradations and the tiling in the loader worker's collate; each
    sample's randomness is its plan's, so the batches equal those finished in on_after_batch_transfer."""
    _photo(tmp_path / "train")
    kwargs = dict(train_dirs=[str(tmp_path / "train")], crop_size=64, batch_size=4, context_size=128,
                  samples_per_epoch=8, degradations=[{"name": "haze"}, {"name": "rain"}, {"name": "gaussian_noise"}],
                  pipeline_mode="chain", num_workers=1)
    batches = {}
    for stage in ("device", "workers"):
        dm = DegradationDataModule(batch_stage=stage, **kwargs)
        dm.setup("fit")
        loader = dm.train_dataloader()
        raw = next(iter(loader))
        assert ("plan" in raw) == (stage == "device")  # the workers finished it already
        batches[stage] = dm.on_after_batch_transfer(raw)
    for key in ("degraded", "clean", "context"):
        assert torch.equal(batches["device"][key], batches["workers"][key]), key
    assert not torch.equal(batches["device"]["degraded"], batches["device"]["clean"])
    with pytest.raises(UserError, match="num_workers"):
        DegradationDataModule(batch_stage="workers", **{**kwargs, "num_workers": 0})
    with pytest.raises(UserError, match="batch_stage"):
        DegradationDataModule(batch_stage="gpu", **kwargs)
