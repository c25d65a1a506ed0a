"""Each training stage fits for real (lightning.Trainer, CPU, 2 steps) on the tiny DataModule, and what it
writes (the exported rvar file and Lightning's own checkpoint) loads through :mod:`rvar.nn.checkpoints`."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from rvar.data import DegradationDataModule
from rvar.errors import UserError
from rvar.lit import ExportCheckpoint, PriorModule, RefinerModule, TokenizerModule
from rvar.nn.checkpoints import build_restorer, build_tokenizer, load_checkpoint, save_checkpoint
from rvar.nn.prior import PriorConfig
from rvar.nn.tokenizer import VQVAE, TokenizerConfig
from tests.tiny_reference import save_tiny_restorer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_data(root: Path, **overrides) -> DegradationDataModule:
    args = dict(crop_size=64, batch_size=2, num_workers=0, samples_per_epoch=4, val_samples=2,
                degradations=[{"name": "gaussian_noise"}, {"name": "haze"}], data_root=str(root))
    return DegradationDataModule(**{**args, **overrides})


def fit(module: L.LightningModule, root: Path, out: Path, steps: int = 2, **data) -> L.Trainer:
    export = ExportCheckpoint(str(out / "export.ckpt"))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=str(out), callbacks=[export])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=tiny_data(root, **data))
    trainer.save_checkpoint(out / "lightning.ckpt")
    return trainer


def assert_finite_logged(trainer: L.Trainer, *names: str) -> None:
    for name in names:
        assert name in trainer.callback_metrics, sorted(trainer.callback_metrics)
        assert math.isfinite(float(trainer.callback_metrics[name])), name


def random_tokenizer_ckpt(path: Path) -> Path:
    return save_checkpoint(path, VQVAE(TokenizerConfig.tiny()))


def test_tokenizer_full_fit(rvar_data_home, tmp_path):
    trainer = fit(TokenizerModule(TokenizerConfig.tiny(), l2_weight=1.0), rvar_data_home, tmp_path)
    assert_finite_logged(trainer, "train/loss", "train/recon_l1", "train/vq_loss", "train/codebook_usage",
                         "train/perplexity", "val/psnr", "val/ssim")
    for name in ("export.ckpt", "lightning.ckpt"):
        ckpt = load_checkpoint(tmp_path / name)
        assert (ckpt["rvar_format"], ckpt["kind"], ckpt["model"]["class_path"]) == (2, "tokenizer", "rvar.nn.tokenizer.VQVAE")
        build_tokenizer(ckpt, name)
    assert list((tmp_path / "images").glob("val_reconstruction_*.png"))  # no logger: PNGs under the log dir


def test_tokenizer_decoder_mode_keeps_the_restorer(rvar_data_home, tmp_path):
    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    module = TokenizerModule(init_from=str(source), mode="decoder")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    fit(module, rvar_data_home, tmp_path)
    after = module.state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed <= {"decoder", "post_quant_conv"} and "decoder" in changed, changed
    ckpt = load_checkpoint(tmp_path / "export.ckpt", kinds=("restorer",))
    assert ckpt["meta"]["decoder"] == "finetuned"
    restorer = build_restorer(ckpt, "export", require_refiner=True)
    assert torch.equal(restorer.prior.head.weight, before["prior.head.weight"])


def test_prior_fit(rvar_data_home, tmp_path):
    tokenizer_ckpt = random_tokenizer_ckpt(tmp_path / "tokenizer.ckpt")
    module = PriorModule(str(tokenizer_ckpt), PriorConfig.tiny(), val_max_batches=1)
    trainer = fit(module, rvar_data_home, tmp_path)
    assert_finite_logged(trainer, "train/loss", "train/accuracy", "val/loss", "val/psnr", "val/ssim")
    assert any(k.startswith("val/psnr/") for k in trainer.callback_metrics), sorted(trainer.callback_metrics)
    assert not any(p.requires_grad for p in module.tokenizer.parameters()) and not module.tokenizer.training
    for name in ("export.ckpt", "lightning.ckpt"):
        ckpt = load_checkpoint(tmp_path / name, kinds=("prior",))
        assert ckpt["model"]["init_args"]["refiner"] is None and ckpt["model"]["init_args"]["prior"]["depth"] == 2
        build_restorer(ckpt, name)


def test_refiner_fit_on_reference_weights(rvar_data_home, tmp_path):
    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    module = RefinerModule(str(source), refiner_dim=64, refiner_depth=1, refiner_heads=2, refiner_mlp_dim=128)
    trainer = fit(module, rvar_data_home, tmp_path)
    assert_finite_logged(trainer, "train/latent_l1", "val/latent_l1", "val/loss", "val/psnr_before", "val/psnr_after",
                         "val/ssim_after")
    for name in ("export.ckpt", "lightning.ckpt"):
        ckpt = load_checkpoint(tmp_path / name, kinds=("restorer",))
        restorer = build_restorer(ckpt, name, require_refiner=True)
        assert restorer.refiner.config.depth == 1


def test_fidelity_fit_trains_only_the_gate_and_exports_a_gated_restorer(rvar_data_home, tmp_path):
    from rvar.lit import FidelityModule

    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    module = FidelityModule(str(source), updates_per_batch=2, update_batch=3, buffer_size=3, val_max_batches=1)
    assert module.gate.config.image_stats  # the stage's default gate reads whole-image statistics
    before = {k: v.clone() for k, v in module.state_dict().items()}
    # whole 96 px images, restored in 64 px tiles as `rvar restore` restores them (96 is not a tile multiple)
    trainer = fit(module, rvar_data_home, tmp_path, steps=2, crop_size=96)  # 2 batches, then validation
    assert len(module.buffer) == 3  # the newest 3 of 4: each the gate's statistics and the differences it blends
    features = module.gate.config.features
    # the default gate standardises its statistics: set once, when the buffer first held update_batch (3) images,
    # from those images (the newest 3 of 4, the buffer now), before the first update
    assert module.gate.config.standardise and module.standardised()
    buffered = torch.stack([s for s, _ in module.buffer]).float().transpose(0, 1).flatten(1)
    assert torch.allclose(module.gate.feature_mean.flatten(), buffered.mean(1), atol=1e-3)
    assert torch.allclose(module.gate.feature_std.flatten(), buffered.std(1).clamp_min(1e-3), rtol=1e-3, atol=1e-4)
    assert all(s.dtype == d.dtype == torch.float16 and s.shape == (features, 96, 96) and d.shape == (9, 96, 96)
               for s, d in module.buffer)
    # an update on buffered statistics is the loss of the gate applied to the images themselves
    x, restored, round_trip = (torch.rand(2, 3, 96, 96) * 2 - 1 for _ in range(3))
    clean = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        draw = [(s, d) for s, d in zip(module.gate.statistics(x, restored, round_trip),
                                       torch.cat([x - round_trip, round_trip - restored, clean - restored], 1))]
        module.update_crop = 96
        assert torch.allclose(module.loss_on(draw), module.loss(module.gate(x, restored, round_trip), clean), atol=1e-5)
        # psnr_cap: a perfect image scores -log of the floor, 4 x 10^(-cap / 10), whichever path computes it
        for cap in (30.0, 40.0):
            module.psnr_cap = cap
            assert abs(float(module.loss(clean, clean)) - math.log(4 * 10 ** (-cap / 10))) < 1e-4
    assert_finite_logged(trainer, "train/loss", "val/loss", "val/psnr_before", "val/psnr_after", "val/gate_a")
    after = module.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"gate"}, changed
    # 2 batches; the first only filled the buffer (2 images < update_batch), the second made 2 updates
    assert trainer.global_step == 2 and trainer.fit_loop.epoch_loop.batch_progress.total.completed == 2
    ckpt = load_checkpoint(tmp_path / "export.ckpt", kinds=("restorer",))
    assert ckpt["meta"]["stage"] == "fidelity" and ckpt["model"]["init_args"]["gate"]["hidden"] == 0
    assert ckpt["model"]["init_args"]["gate"]["image_stats"] is True
    restorer = build_restorer(ckpt, "export", require_refiner=True)
    assert restorer.gate is not None
    assert torch.equal(restorer.gate.net[-1].weight, after["gate.net.0.weight"])
    # fine-tuning the decoder of a gated restorer keeps the gate (frozen) in what it exports
    from rvar.nn.checkpoints import checkpoint_entries

    decoder_stage = TokenizerModule(init_from=str(tmp_path / "export.ckpt"), mode="decoder")
    assert not any(p.requires_grad for p in decoder_stage.gate.parameters())
    assert checkpoint_entries(decoder_stage)["model"]["init_args"]["gate"]["hidden"] == 0


def test_fidelity_stage_restores_in_bf16_to_the_fp32_result(tmp_path):
    """``restore_precision="bf16"``: the frozen restorer runs under bf16 autocast (faster where the CPU has bf16),
    and hands the gate fp32 tensors close to the fp32 restoration."""
    from rvar.eval.metrics import psnr_per_image
    from rvar.lit import FidelityModule

    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    g = torch.Generator().manual_seed(0)
    batch = {"degraded": torch.rand(2, 3, 96, 96, generator=g)}
    out = {p: FidelityModule(str(source), restore_precision=p).restore(batch) for p in ("fp32", "bf16")}
    for full, half in zip(out["fp32"], out["bf16"], strict=True):
        assert half.dtype == torch.float32 and half.shape == full.shape
        assert float(psnr_per_image((half[None, 0] + 1) / 2, (full[None, 0] + 1) / 2)[0]) > 30
    assert not torch.equal(out["fp32"][1], out["bf16"][1])  # bf16 did run


def test_fidelity_fit_refuses_tiles_with_context_and_bad_sizes(rvar_data_home, tmp_path):
    """The stage tiles whole images itself: data that already comes as tiles with context is a one-line error."""
    from rvar.errors import UserError
    from rvar.lit import FidelityModule

    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    for bad in ({"update_batch": 0}, {"buffer_size": 0}, {"update_crop": 0}, {"tile_overlap": -1}, {"psnr_cap": 5},
                {"restore_precision": "fp16"}):
        with pytest.raises(UserError, match=next(iter(bad))):
            FidelityModule(str(source), **bad)
    with pytest.raises(UserError, match="remove data.init_args.context_size"):
        fit(FidelityModule(str(source), val_max_batches=1), rvar_data_home, tmp_path, context_size=128)


def test_fidelity_fit_with_candidates_keeps_the_gate_with_the_lowest_buffer_loss(rvar_data_home, tmp_path):
    """``candidates``: several gates fitted side by side on the same crops; at the end of training the stage keeps
    (and exports) the one whose loss on the buffered whole images is lowest."""
    from rvar.errors import UserError
    from rvar.lit import FidelityModule

    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    with pytest.raises(UserError, match="candidates"):
        FidelityModule(str(source), candidates=0)
    gate = {"hidden": 2, "image_stats": True, "standardise": True}
    module = FidelityModule(str(source), gate=gate, candidates=3, updates_per_batch=2, update_batch=3, buffer_size=3,
                            val_max_batches=1)
    starts = [{k: v.clone() for k, v in g.state_dict().items()} for g in module.candidates()]
    assert not torch.equal(starts[0]["net.0.weight"], starts[1]["net.0.weight"])  # different random starts
    fit(module, rvar_data_home, tmp_path, steps=2, crop_size=96)
    for g, start in zip(module.candidates(), starts):  # every candidate was standardised and trained
        assert torch.equal(g.feature_mean, module.gate.feature_mean)
        assert not torch.equal(g.net[-1].weight, start["net.2.weight"])
    losses = module.buffer_losses()
    assert int(losses.argmin()) == 0  # what the stage kept is the best of the three on its buffer
    # an update computes the candidates as one wider network: the same losses as each gate on its own
    for m in (module, FidelityModule(str(source), gate={"hidden": 0, "image_stats": True}, candidates=2),
              FidelityModule(str(source), gate={"hidden": 0, "image_stats": True, "chroma": True}, candidates=2)):
        with torch.no_grad():
            for g in m.rivals:  # a linear candidate starts as the first; make it differ
                g.net[0].weight.normal_()
        crops = m.crops([(s.float(), d.float()) for s, d in module.buffer]) if m is module else torch.randn(
            2, m.gate.config.features + 9, 32, 32)
        fused = m.candidate_losses(crops)
        assert fused.shape == (len(m.candidates()),) and len(set(fused.tolist())) == len(fused)
        assert torch.allclose(fused, torch.stack([m.gated_loss(g, crops) for g in m.candidates()]), atol=1e-5)
    exported = build_restorer(load_checkpoint(tmp_path / "export.ckpt", kinds=("restorer",)), "export").gate
    assert all(torch.equal(v, module.gate.state_dict()[k]) for k, v in exported.state_dict().items())
    # the choice itself: spoil the kept gate (a = b = 0 everywhere: the restorer's output) and choose again
    with torch.no_grad():
        module.gate.net[-1].weight.zero_()
        module.gate.net[-1].bias.fill_(-30.0)
    spoiled = module.buffer_losses()
    best = int(spoiled.argmin())
    assert best != 0
    module.on_validation_epoch_start()  # validation scores the gate the stage would keep now
    assert module.validated == best
    module.on_train_end()
    assert module.chosen_candidate == best and module.validated == 0  # now copied into the gate itself
    assert torch.equal(module.gate.net[-1].bias, module.rivals[best - 1].net[-1].bias)


def test_fidelity_fit_fits_the_image_switch_at_its_end(rvar_data_home, tmp_path):
    from rvar.lit import FidelityModule
    from rvar.nn.fidelity import FidelityConfig

    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    gate = FidelityConfig(hidden=4, image_stats=True, standardise=True, switch_classes=["gaussian_noise", "haze"])
    module = FidelityModule(str(source), gate=gate, updates_per_batch=1, update_batch=2, buffer_size=4,
                            val_max_batches=1)
    switch = [*module.gate.switch_classifier.parameters(), module.gate.switch_trust]
    trainer = fit(module, rvar_data_home, tmp_path, steps=2, crop_size=64)
    # the updates never touch the switch (DDP refuses parameters a step leaves unused): frozen, not optimised,
    # and frozen again after its own fit
    assert not any(p.requires_grad for p in switch)
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimised and not optimised & {id(p) for p in switch}
    assert set(module.buffer_labels) <= {"gaussian_noise", "haze"} and len(module.buffer_labels) == 4
    assert module.gate.has_switch
    restorer = build_restorer(load_checkpoint(tmp_path / "export.ckpt", kinds=("restorer",)), "export")
    assert restorer.gate.has_switch and restorer.gate.config.switch_classes == ["gaussian_noise", "haze"]
    assert torch.equal(restorer.gate.switch_trust, module.gate.switch_trust)



def test_fidelity_fit_restores_part_of_each_batch_and_teaches_the_input_switch_with_all_of_it(rvar_data_home, tmp_path):
    """restore_images: the first images of each batch are restored and buffered; with switch_inputs "input" every
    image of the batch teaches the switch's classifier (the rest through the pool), and the export carries it; with
    colour the input's colour share per label is fitted after it, on the buffered images, and exported too."""
    from rvar.lit import FidelityModule
    from rvar.nn.fidelity import FidelityConfig

    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    gate = FidelityConfig(hidden=4, image_stats=True, standardise=True, switch_classes=["gaussian_noise", "haze"],
                          switch_inputs="input", switch_keep=True, chroma=True, colour=True, switch_highlights=True)
    module = FidelityModule(str(source), gate=gate, updates_per_batch=1, update_batch=2, buffer_size=8,
                            restore_images=1, val_max_batches=1)
    trainer = fit(module, rvar_data_home, tmp_path, steps=3, crop_size=64, batch_size=3, samples_per_epoch=12)
    batches = trainer.fit_loop.epoch_loop.batch_progress.total.completed
    assert batches == 4  # the first only filled the buffer (1 image < update_batch), then one update per batch
    assert len(module.buffer) == len(module.buffer_labels) == len(module.buffer_inputs) == len(module.buffer_x) \
        == batches  # 1 of 3 each
    assert len(module.pool) == 2 * batches and {label for _, label in module.pool} <= {"gaussian_noise", "haze"}
    assert module.gate.has_switch and bool((module.gate.switch_std != 1).any())  # standardised on all 12 images
    assert module.buffer_inputs[0].shape == (9,)  # the 8 input statistics and the highlight level
    restorer = build_restorer(load_checkpoint(tmp_path / "export.ckpt", kinds=("restorer",)), "export")
    assert restorer.gate.config.switch_inputs == "input" and restorer.gate.config.switch_keep
    assert torch.equal(restorer.gate.switch_mean, module.gate.switch_mean)
    assert torch.equal(restorer.gate.switch_keep, module.gate.switch_keep)
    assert not module.gate.switch_keep.requires_grad  # fitted at the end, never by the updates (DDP)
    assert module.gate.has_colour and restorer.gate.has_colour and not module.gate.switch_colour.requires_grad
    assert torch.equal(restorer.gate.switch_colour, module.gate.switch_colour)
    assert not torch.equal(module.gate.switch_colour, torch.zeros(2))  # fitted (it starts at 0)
    with pytest.raises(UserError, match="restore_images"):
        FidelityModule(str(source), restore_images=0)


def test_refiner_pretraining_hides_the_degraded_inputs_and_starts_the_refiner_stage(rvar_data_home, tmp_path):
    """The shipped refiner's pre-training (experiments/tiny/refiner_pretrain.yaml, hide_degraded) sees only the prior's
    outputs; a refiner stage started from it (init_from) is that refiner exactly, its degraded-image inputs silent
    until it learns them, and a refiner of other sizes is refused in one line."""
    from rvar.errors import CheckpointError

    source = save_tiny_restorer(tmp_path / "tiny_restorer.ckpt")
    sizes = dict(refiner_dim=64, refiner_depth=1, refiner_heads=2, refiner_mlp_dim=128, condition_on_degraded=True,
                 whole_image_context=True)
    pre = RefinerModule(str(source), hide_degraded=True, **sizes)
    hidden = {n for n, p in pre.named_parameters() if not p.requires_grad and n.startswith("refiner.")}
    assert hidden == {f"refiner.{m}.{w}" for m in ("norm_in_degraded", "norm_in_context") for w in ("weight", "bias")} \
        | {"refiner.proj_in_degraded.weight", "refiner.proj_in_context.weight"}
    g = torch.Generator().manual_seed(0)
    batch = {"degraded": torch.rand(2, 3, 64, 64, generator=g), "clean": torch.rand(2, 3, 64, 64, generator=g)}
    f_hat, *_, degraded, context = pre.prior_latents(batch)  # no whole-image context in the batch: none needed
    assert not degraded.any() and not context.any() and degraded.shape == f_hat.shape
    before = {k: v.clone() for k, v in pre.refiner.state_dict().items()}
    fit(pre, rvar_data_home, tmp_path / "pre", degradations=[])  # clean images only, as the asset is made
    after = pre.refiner.state_dict()
    assert not torch.equal(before["proj_out.weight"], after["proj_out.weight"])  # it learned
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith(("norm_in_degraded", "proj_in_degraded",
                                                                                "norm_in_context", "proj_in_context")))
    pretrained = tmp_path / "pre" / "export.ckpt"
    assert load_checkpoint(pretrained, kinds=("restorer",))["meta"]["hide_degraded"] is True

    stage = RefinerModule(str(source), init_from=str(pretrained), **sizes)
    assert all(p.requires_grad for p in stage.refiner.parameters())
    for k, v in stage.refiner.state_dict().items():
        expected = torch.zeros_like(v) if k in ("proj_in_degraded.weight", "proj_in_context.weight") else after[k]
        assert torch.equal(v, expected), k
    cfg = pre.refiner.config
    f_hat = torch.randn(2, cfg.seq_len, cfg.in_dim, generator=g)
    last_block = torch.randn(2, cfg.seq_len_cond, cfg.in_dim_cond, generator=g)
    real, zeros = torch.randn(2, cfg.seq_len, cfg.in_dim, generator=g), torch.zeros(2, cfg.seq_len, cfg.in_dim)
    with torch.no_grad():
        assert torch.equal(stage.refiner(f_hat, last_block, real, real), pre.refiner(f_hat, last_block, zeros, zeros))
    assert stage.rvar_meta()["init_from"] == str(pretrained) and "hide_degraded" not in stage.rvar_meta()
    with pytest.raises(CheckpointError, match="does not fit the model"):
        RefinerModule(str(source), init_from=str(pretrained), **{**sizes, "refiner_dim": 32})
