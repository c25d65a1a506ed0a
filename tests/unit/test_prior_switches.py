"""The rvar switches that make the prior carry the restoration in CPU minutes, and the no-prior ablation:
position-aligned conditioning (``PriorConfig.aligned_condition``) and a refiner that does not read the prior
(``RefinerConfig.reads_prior``)."""
from __future__ import annotations

import pytest
import torch

from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.refiner import LatentRefiner, RefinerConfig
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import VQVAE, TokenizerConfig


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VQVAE(TokenizerConfig.tiny()).eval()


def _prior(**switches) -> RestoreVARPrior:
    torch.manual_seed(0)
    return RestoreVARPrior(PriorConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2, 3, 4), vocab_size=64,
                                       z_channels=32, **switches))


def test_aligned_condition_is_off_by_default_and_adds_one_projection():
    plain, aligned = _prior(), _prior(aligned_condition=True)
    extra = set(aligned.state_dict()) - set(plain.state_dict())
    assert extra == {"word_embed_aligned.weight", "word_embed_aligned.bias"}  # the published keys are untouched
    assert not PriorConfig.d16_512().aligned_condition


def test_aligned_condition_reaches_every_scale_with_zero_cross_attention_gains(vae):
    # RestoreVAR's init: every cross-attention gain 0, so only the aligned path can carry the condition
    prior = _prior(aligned_condition=True).eval()
    dark, bright = (vae.encode_condition(torch.full((1, 3, 64, 64), v)) for v in (-0.8, 0.8))
    a, b = prior.sample(dark, vae.quantize), prior.sample(bright, vae.quantize)
    assert not torch.equal(a.last_block, b.last_block)
    plain = _prior().eval()
    assert torch.equal(plain.sample(dark, vae.quantize).last_block, plain.sample(bright, vae.quantize).last_block)


def test_aligned_condition_sampling_matches_teacher_forcing(vae):
    prior = _prior(aligned_condition=True, condition_gain_init=0.5).eval()
    cond = vae.encode_condition(torch.rand(2, 3, 64, 64) * 2 - 1)
    cached = prior.sample(cond, vae.quantize, use_cache=True)
    uncached = prior.sample(cond, vae.quantize, use_cache=False)
    for x, y in zip(cached.indices, uncached.indices, strict=True):
        assert torch.equal(x, y)
    tf_logits = prior(vae.quantize.teacher_forcing_input(cached.indices), cond)
    assert torch.equal(tf_logits.argmax(-1), torch.cat(cached.indices, 1))


def _restorer(vae, reads_prior: bool) -> Restorer:
    prior = _prior(aligned_condition=True).eval()
    cfg = RefinerConfig.for_prior(prior.config, dim=32, depth=1, heads=2, mlp_dim=64, in_dim_degraded=32,
                                  residual_from_degraded=True, reads_prior=reads_prior)
    torch.manual_seed(1)
    refiner = LatentRefiner(cfg)
    with torch.no_grad():
        refiner.proj_out.weight.normal_(0, 0.1)  # a trained refiner's non-zero residual
    return Restorer.from_networks(vae, prior, refiner.eval())


def test_no_prior_ablation_ignores_the_prior_and_never_samples_it(vae, monkeypatch):
    ablation = _restorer(vae, reads_prior=False)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    before = ablation.restore(x).image
    with torch.no_grad():  # a different prior changes nothing
        for p in ablation.prior.parameters():
            p.add_(torch.randn_like(p))
    monkeypatch.setattr(ablation.prior, "sample", lambda *a, **k: pytest.fail("the ablation sampled the prior"))
    assert torch.equal(ablation.restore(x).image, before)
    refiner = ablation.refiner
    f, h = torch.randn(1, 16, 32), torch.randn(1, 30, 64)
    d = torch.randn(1, 16, 32)
    assert torch.equal(refiner(f, h, d), refiner(torch.randn_like(f), torch.randn_like(h), d))


def test_the_full_restorer_does_read_the_prior(vae):
    full = _restorer(vae, reads_prior=True)
    f, h, d = torch.randn(1, 16, 32), torch.randn(1, 30, 64), torch.randn(1, 16, 32)
    assert not torch.equal(full.refiner(f, h, d), full.refiner(torch.randn_like(f), h, d))


def test_ablation_needs_the_degraded_residual():
    with pytest.raises(ValueError, match="residual_from_degraded"):
        RefinerConfig.for_prior(PriorConfig.tiny(), reads_prior=False)


# ---- expected decoding (PriorConfig.decoding) ------------------------------------------------------------------
def test_decoding_is_greedy_by_default_and_not_in_the_tensors():
    greedy, expected = _prior(), _prior(decoding="expected")
    assert PriorConfig.d16_512().decoding == "greedy" and greedy.config.decoding == "greedy"
    assert set(greedy.state_dict()) == set(expected.state_dict())  # a checkpoint decodes either way
    from rvar.errors import UserError
    with pytest.raises(UserError, match="'mean' is not one of greedy, expected"):
        PriorConfig(decoding="mean")


def test_expected_decoding_adds_the_probability_weighted_codebook(vae):
    """With a flat head every token is equally likely: each scale adds the codebook's mean, not any one code."""
    prior = _prior(aligned_condition=True, decoding="expected").eval()
    with torch.no_grad():
        prior.head.weight.zero_()
        prior.head.bias.zero_()
    q = vae.quantize
    cond = vae.encode_condition(torch.rand(2, 3, 64, 64) * 2 - 1)
    out = prior.sample(cond, q)
    mean_C = q.embedding.weight.mean(0)
    f_hat = torch.zeros_like(out.f_hat)
    for si, pn in enumerate(prior.patch_nums):
        f_hat, _ = q.next_autoregressive_input(si, f_hat, mean_C.view(1, -1, 1, 1).expand(2, -1, pn, pn))
    assert torch.allclose(out.f_hat, f_hat, atol=1e-5)
    prior.set_decoding("greedy")  # the argmax of a flat head: code 0 everywhere
    assert not torch.allclose(prior.sample(cond, q).f_hat, f_hat, atol=1e-3)


def test_expected_decoding_of_a_sure_prior_is_the_greedy_one(vae):
    prior = _prior(aligned_condition=True, condition_gain_init=0.5).eval()
    with torch.no_grad():
        prior.head.weight.mul_(1e9)  # every distribution one-hot at its argmax
    cond = vae.encode_condition(torch.rand(2, 3, 64, 64) * 2 - 1)
    greedy = prior.sample(cond, vae.quantize)
    prior.set_decoding("expected")
    expected = prior.sample(cond, vae.quantize)
    assert torch.allclose(expected.f_hat, greedy.f_hat, atol=1e-4)
    for a, b in zip(expected.indices, greedy.indices, strict=True):
        assert torch.equal(a, b)  # the chosen tokens are still reported
