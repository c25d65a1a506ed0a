"""The CPU demo recipe's options (issue #11): each is off by default, so the released architectures and the
reference parity are untouched, and each does what it says when switched on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rvar.errors import UserError
from rvar.lit import TokenizerModule
from rvar.nn.refiner import LatentRefiner, RefinerConfig
from rvar.nn.tokenizer import VQVAE, TokenizerConfig
from rvar_plugins.baselines.ldm import LatentDiffusionRestorer

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_refiner_degraded_input_is_optional_and_used():
    plain = LatentRefiner(RefinerConfig.tiny())
    conditioned = LatentRefiner(RefinerConfig(**{**RefinerConfig.tiny().to_dict(), "in_dim_degraded": 32}))
    # the released layout gains no keys; the option adds exactly its two input layers
    assert set(conditioned.state_dict()) - set(plain.state_dict()) == {
        "norm_in_degraded.weight", "norm_in_degraded.bias", "proj_in_degraded.weight"}
    torch.nn.init.normal_(conditioned.proj_out.weight, std=0.1)  # away from the identity start
    f_hat, cond = torch.randn(2, 16, 32), torch.randn(2, 30, 128)
    a = conditioned(f_hat, cond, torch.zeros(2, 16, 32))
    b = conditioned(f_hat, cond, torch.randn(2, 16, 32))
    assert not torch.allclose(a, b)
    b.abs().mean().backward()
    assert conditioned.proj_in_degraded.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs"):
        conditioned(f_hat, cond)
    with pytest.raises(ValueError, match="takes no"):
        plain(f_hat, cond, torch.zeros(2, 16, 32))


def test_norm_groups_regroups_every_norm_and_keeps_the_default():
    default = VQVAE(TokenizerConfig.tiny())
    assert {m.num_groups for m in default.modules() if isinstance(m, torch.nn.GroupNorm)} == {32}
    one = VQVAE(TokenizerConfig.cpu_f4())
    assert {m.num_groups for m in one.modules() if isinstance(m, torch.nn.GroupNorm)} == {1}
    assert set(one.state_dict()) == set(VQVAE(TokenizerConfig(**{**TokenizerConfig.cpu_f4().to_dict(),
                                                                  "norm_groups": 32})).state_dict())
    # a flat image of another colour must give another latent: per-channel instance norms erase it
    flat = [torch.full((1, 3, 64, 64), v) for v in (-0.5, 0.5)]
    f = [one.encode_continuous(x) for x in flat]
    assert not torch.allclose(f[0], f[1], atol=1e-4)
    with pytest.raises(ValueError, match="norm_groups"):
        VQVAE(TokenizerConfig(**{**TokenizerConfig.cpu_f4().to_dict(), "norm_groups": 5}))


def test_continuous_weight_trains_the_continuous_path():
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = TokenizerModule(tokenizer=TokenizerConfig.cpu_f4())
    both = TokenizerModule(tokenizer=TokenizerConfig.cpu_f4(), continuous_weight=0.5)
    both.load_state_dict(plain.state_dict())
    loss_plain, _, terms_plain = plain._generator_losses(clean, adversarial=False)
    loss_both, _, terms = both._generator_losses(clean, adversarial=False)
    assert "continuous_l1" not in terms_plain and {"continuous_l1", "continuous_l2"} <= set(terms)
    expected = loss_plain + 0.5 * (terms["continuous_l1"] + 0.0 * terms["continuous_l2"])  # l2_weight 0 default
    assert torch.allclose(loss_both, expected, atol=1e-6)
    continuous = both.tokenizer.decode(both.tokenizer.encode_continuous(clean), clamp=False)
    assert torch.allclose(terms["continuous_l1"], (continuous - clean).abs().mean(), atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_ldm_prediction_types_train_and_sample(prediction_type):
    module = LatentDiffusionRestorer(tokenizer_ckpt=str(FIXTURES / "tiny_vae.pth"), tokenizer_preset="tiny",
                                     sampling_steps=2, prediction_type=prediction_type)
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    loss = module.training_loss({"clean": clean, "degraded": clean * 0.5})
    loss.backward()
    assert torch.isfinite(loss) and module.training_scheduler().config.prediction_type == prediction_type
    assert module.sampling_scheduler().config.prediction_type == prediction_type
    assert module.init_args()["prediction_type"] == prediction_type
    out = module.eval().restore_images(clean * 0.5, steps=2)
    assert out.shape == clean.shape and torch.isfinite(out).all()


def test_ldm_x0_prediction_with_a_perfect_denoiser_returns_the_clean_latent():
    """With x0-prediction, a denoiser that outputs the clean latent makes DDIM land on it from any noise."""
    module = LatentDiffusionRestorer(tokenizer_ckpt=str(FIXTURES / "tiny_vae.pth"), tokenizer_preset="tiny",
                                     prediction_type="sample").eval()
    target = torch.randn(1, 32, 4, 4)
    module.denoiser.forward = lambda x, t, cond: target.expand_as(x)
    out = module.sample_latent(torch.zeros_like(target), steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-4)


def test_ldm_rejects_unknown_prediction_type():
    with pytest.raises(UserError, match="prediction_type"):
        LatentDiffusionRestorer(tokenizer_ckpt=None, tokenizer_preset="tiny", prediction_type="noise")


def test_embedded_splits_are_disjoint_and_dead_leaves_reproducible(rvar_data_home):
    from rvar.data.embedded import VAL_IMAGES, dead_leaves, ensure_embedded, full_gamut_palette, vendored_photos

    root = ensure_embedded()
    names = {split: {p.stem for p in (root / split).glob("*.png")} for split in ("train", "val", "test")}
    assert names["test"] == set(vendored_photos("test")) and len(names["test"]) >= 12
    assert names["val"] == set(VAL_IMAGES) | set(vendored_photos("val"))  # natural photos only
    assert set(vendored_photos("train")) <= names["train"]
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    assert not (names["val"] & names["test"])
    assert sum(n.startswith("dead_leaves") for n in names["train"]) >= 40
    palette = np.array([[10, 20, 30], [200, 100, 50]], dtype=np.uint8)
    a, b = dead_leaves(3, palette, size=64), dead_leaves(3, palette, size=64)
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, dead_leaves(4, palette, size=64))
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 2 or a.std() > 0  # discs, not a flat canvas
    # the full-gamut palettes reach saturated greens and blues that the warm photos rarely show
    gamut = full_gamut_palette(1).astype(int)
    r, g, b = gamut.T
    assert ((g > r + 80) & (g > b + 80)).mean() > 0.02 and ((b > r + 80) & (b > g + 80)).mean() > 0.02


def test_an_older_embedded_set_is_rebuilt(tmp_path, monkeypatch):
    import rvar.data.embedded as embedded
    from rvar.data.embedded import VERSION, ensure_embedded

    monkeypatch.setattr(embedded, "DEAD_LEAVES", 2)  # the rebuild logic, not the drawing, is under test

    old = tmp_path / "embedded"
    (old / "train").mkdir(parents=True)
    (old / "train" / "stale.png").write_bytes(b"x")
    (old / ".complete").write_text("scikit-image photographs, written by rvar.data.embedded\n")  # v1 marker
    root = ensure_embedded(old)
    assert not (root / "train" / "stale.png").exists() and (root / "test").is_dir()
    assert (root / ".complete").read_text().startswith(f"v{VERSION} ")


def test_report_gathers_sibling_demos_by_budget(tmp_path):
    import json

    from rvar.demo.report import budget_history, write_budget_plot

    for folder, minutes, psnr, tokenizer in (("demo60", 60, 21.5, "shipped"), ("demo", 15, 20.1, "shipped"),
                                             ("broken", None, None, None), ("scratch30", 30, 18.0, "trained")):
        (tmp_path / folder).mkdir()
        text = "{not json" if minutes is None else json.dumps(
            {"minutes": minutes, "tokenizer": tokenizer, "psnr": {"restorevar": psnr, "degraded input": 17.7}})
        (tmp_path / folder / "demo.json").write_text(text)
    history = budget_history(tmp_path / "demo", "shipped")  # demos that trained their own tokenizer are apart
    assert [(h["minutes"], h["psnr"]["restorevar"]) for h in history] == [(15.0, 20.1), (60.0, 21.5)]
    assert [h["folder"] for h in budget_history(tmp_path / "demo", "trained")] == ["scratch30"]
    assert write_budget_plot(tmp_path / "plot.png", history) and (tmp_path / "plot.png").stat().st_size > 1000


def test_shipped_tokenizer_is_a_tiny_tokenizer_and_the_demo_copies_it(tmp_path):
    import json

    from rvar.demo.runner import SHIPPED_TOKENIZER, config_digest, demo_stages, install_shipped_tokenizer
    from rvar.nn.checkpoints import build_tokenizer, load_checkpoint

    ckpt = load_checkpoint(SHIPPED_TOKENIZER, kinds=("tokenizer",))
    tokenizer = build_tokenizer(ckpt, SHIPPED_TOKENIZER)
    assert tokenizer.config.patch_nums == TokenizerConfig.cpu_f8().patch_nums
    about = json.loads(SHIPPED_TOKENIZER.with_suffix(".json").read_text())
    assert about["steps"] > 0 and "make assets" in about["command"]
    lines = []
    result = install_shipped_tokenizer(tmp_path, lines.append)
    assert result.status == "shipped" and (tmp_path / "tokenizer.ckpt").read_bytes() == SHIPPED_TOKENIZER.read_bytes()
    assert "shipped" in lines[0]
    assert [s.name for s in demo_stages(False)] == ["prior", "refiner", "decoder", "fidelity", "noprior",
                                                    "noprior_fidelity", "ldm", "nafnet"]
    assert demo_stages(True)[0].name == "tokenizer"
    # with a tokenizer of its own the demo cannot use the shipped pre-trained prior and denoiser
    assert all("pretrained" not in name for s in demo_stages(True) for name in s.reads.values())
    assert {s.name: s.reads.get("init_from") for s in demo_stages(False)}["prior"] == "prior_pretrained.ckpt"
    # a stage's digest follows the checkpoints it reads, not only its config
    before = config_digest({"a": 1}, [tmp_path / "tokenizer.ckpt"])
    (tmp_path / "tokenizer.ckpt").write_bytes(b"changed")
    assert config_digest({"a": 1}, [tmp_path / "tokenizer.ckpt"]) != before


def test_refiner_pixel_loss_reaches_the_refiner_through_the_frozen_decoder(tmp_path):
    from rvar.lit.refiner import RefinerModule
    from rvar.nn.checkpoints import save_checkpoint
    from rvar.nn.prior import PriorConfig, RestoreVARPrior
    from rvar.nn.restorer import Restorer
    from rvar.nn.tokenizer import VQVAE

    tok = TokenizerConfig.cpu_f8()
    prior = PriorConfig.tiny(patch_nums=tok.patch_nums, vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    path = tmp_path / "prior.ckpt"
    save_checkpoint(path, Restorer.from_networks(VQVAE(tok), RestoreVARPrior(prior)))
    g = torch.Generator().manual_seed(1)
    batch = {"degraded": torch.rand(2, 3, 64, 64, generator=g), "clean": torch.rand(2, 3, 64, 64, generator=g),
             "degradation": ["haze", "rain"]}
    losses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(2)
        module = RefinerModule(str(path), refiner_dim=32, refiner_depth=1, refiner_heads=2, refiner_mlp_dim=32,
                               condition_on_degraded=True, residual_from_degraded=True, pixel_weight=weight)
        module.log_metric = lambda *a, **k: None
        loss = module._shared_step(batch, "train")
        loss.backward()
        losses[weight] = (loss.item(), module.refiner.proj_out.weight.grad.abs().sum().item())
        assert all(p.grad is None for p in module.tokenizer.parameters())  # the decoder stays frozen
    assert losses[1.0][0] > losses[0.0][0] and losses[1.0][1] != losses[0.0][1]


def test_refiner_residual_from_degraded_starts_as_the_degraded_round_trip():
    from rvar.nn.prior import PriorConfig
    from rvar.nn.restorer import Restorer

    tok = TokenizerConfig.cpu_f8()
    prior = PriorConfig.tiny(patch_nums=tok.patch_nums, vocab_size=tok.vocab_size)
    refiner = RefinerConfig.for_prior(prior, dim=64, depth=1, heads=2, mlp_dim=64,
                                      in_dim_degraded=32, residual_from_degraded=True)
    restorer = Restorer(tok, prior, refiner).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = restorer.restore(x)
    # the output projection starts at zero: the refined latent is the degraded image's continuous latent
    assert torch.allclose(out.f_refined, restorer.tokenizer.encode_continuous(x), atol=1e-5)
    assert not torch.allclose(out.f_refined, out.f_hat.float(), atol=1e-3)
    with pytest.raises(ValueError, match="residual_from_degraded"):
        RefinerConfig(residual_from_degraded=True)  # no degraded input to add the residual to


def test_refiner_blend_degraded_starts_halfway_and_learns_the_blend_per_token():
    from rvar.nn.prior import PriorConfig
    from rvar.nn.restorer import Restorer

    tok = TokenizerConfig.cpu_f8()
    prior = PriorConfig.tiny(patch_nums=tok.patch_nums, vocab_size=tok.vocab_size)
    refiner = RefinerConfig.for_prior(prior, dim=64, depth=1, heads=2, mlp_dim=64, in_dim_degraded=32,
                                      blend_degraded=True)
    restorer = Restorer(tok, prior, refiner).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = restorer.restore(x)
    degraded = restorer.tokenizer.encode_continuous(x)
    # at the start the base is halfway from the prior's f_hat to the degraded latent, and no residual is added
    assert torch.allclose(out.f_refined, (out.f_hat.float() + degraded) / 2, atol=1e-5)
    # the blend is per token: one step on a target at the degraded latent moves the base towards it
    net = restorer.refiner
    f_hat = out.f_hat.float().flatten(2).transpose(1, 2)
    d = degraded.flatten(2).transpose(1, 2)
    last = torch.randn(2, refiner.seq_len_cond, refiner.in_dim_cond)
    loss = (net(f_hat, last, d) - d).abs().mean()
    loss.backward()
    assert net.proj_blend.bias.grad.item() < 0  # a larger blend lowers the loss
    assert net.proj_blend.weight.grad.abs().sum() > 0  # the blend reads each token's features, not one constant
    for bad in (dict(in_dim_degraded=32, blend_degraded=True, residual_from_degraded=True),
                dict(blend_degraded=True)):
        with pytest.raises(ValueError, match="blend_degraded"):
            RefinerConfig(**bad)


def test_ldm_residual_on_condition_adds_the_degraded_latent():
    module = LatentDiffusionRestorer(tokenizer_ckpt=str(FIXTURES / "tiny_vae.pth"), tokenizer_preset="tiny",
                                     prediction_type="sample", residual_on_condition=True).eval()
    cond, target = torch.randn(1, 32, 4, 4), torch.randn(1, 32, 4, 4)
    module.denoiser.forward = lambda x, t, c: (target - c).expand_as(x)  # a perfect residual denoiser
    out = module.sample_latent(cond, steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-4)
    assert module.init_args()["residual_on_condition"] is True
    with pytest.raises(UserError, match="residual_on_condition"):
        LatentDiffusionRestorer(tokenizer_ckpt=None, tokenizer_preset="tiny", residual_on_condition=True)


def test_every_demo_contender_gets_the_same_training_budget():
    from rvar.demo.runner import RESTOREVAR_SHARES, demo_stages, stage_seconds

    stages = demo_stages(False)
    seconds = stage_seconds(stages, 600.0)
    restorevar = sum(seconds[name] for name in RESTOREVAR_SHARES)
    assert abs(restorevar - 150.0) < 1e-6  # four contenders: RestoreVAR (four stages), the ablation (two), LDM, NAFNet
    assert abs(seconds["noprior"] + seconds["noprior_fidelity"] - restorevar) < 1e-6
    assert abs(seconds["noprior_fidelity"] - seconds["fidelity"]) < 1e-6
    assert all(abs(seconds[name] - restorevar) < 1e-6 for name in ("ldm", "nafnet"))
    assert seconds["prior"] > seconds["decoder"] > 0
    # after the prior took its part, the refiner and decoder share what is left of RestoreVAR's budget
    later = stage_seconds(stages[1:], 600.0 - seconds["prior"], spent=seconds["prior"])
    assert abs(later["refiner"] - seconds["refiner"]) < 1e-6 and abs(later["ldm"] - seconds["ldm"]) < 1e-6


def test_the_demo_keeps_more_time_for_its_comparison_where_it_runs_in_fp32():
    """Without native bf16 the comparison runs in fp32 (353 s of a 15-minute demo on a 2-core AMD EPYC without it):
    the demo keeps more of its budget back for it, so the stages train less and the whole stays near 15 minutes."""
    from rvar.demo.runner import COMPARE_SHARE, comparison_reserve

    assert comparison_reserve(900.0, True) == COMPARE_SHARE * 900.0
    assert comparison_reserve(900.0, False) >= 360.0 > comparison_reserve(900.0, True)
    assert comparison_reserve(60.0, False) == 45.0  # a tiny budget still leaves the comparison its floor
