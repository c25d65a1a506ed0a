"""Numerical parity with the public VAR / RestoreVAR code on the tiny reference set (tests/fixtures).

The fixtures were produced by FoundationVision/VAR @78b9539 and sudraj2002/RestoreVAR @d452d5a on CPU, fp32.
Smallest top-1 vs top-2 logit margin is 3e-4, so logits are compared at 1e-4 and indices exactly.
"""
from __future__ import annotations

import pytest
import torch

from tests.tiny_reference import parity_data, tiny_restorer

ATOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    return parity_data()


@pytest.fixture(scope="module")
def restorer():
    return tiny_restorer()


def test_tokenizer_matches_reference(ref, restorer):
    vae, e, clean = restorer.tokenizer, ref["expected"], ref["inputs"]["clean"]
    with torch.no_grad():
        f = vae.encode_continuous(clean)
        idx, f_hats = vae.quantize.quantize(f)
        torch.testing.assert_close(f, e["f_BChw"], atol=ATOL, rtol=0)
        for got, want in zip(idx, e["idx_Bl"], strict=True):
            assert torch.equal(got, want)
        torch.testing.assert_close(f_hats[-1], e["f_hat_BChw"], atol=ATOL, rtol=0)
        torch.testing.assert_close(vae.quantize.teacher_forcing_input(idx), e["var_input_BLCv"], atol=ATOL, rtol=0)
        # the reference kept four encoder levels (cond_fs); the prior reads only the last one
        torch.testing.assert_close(vae.encode_condition(ref["inputs"]["degraded"]), e["cond_fs"][-1], atol=ATOL, rtol=0)
        torch.testing.assert_close(vae.decode(e["f_hat_BChw"]), e["recon_img"], atol=ATOL, rtol=0)


def test_prior_teacher_forcing_matches_reference(ref, restorer):
    e = ref["expected"]
    with torch.no_grad():
        logits = restorer.prior(e["var_input_BLCv"], e["cond_fs"][-1])
    torch.testing.assert_close(logits, e["logits_BLV"], atol=ATOL, rtol=0)
    assert torch.equal(logits.argmax(-1), e["logits_BLV"].argmax(-1))


@pytest.mark.parametrize("use_cache", [True, False])
def test_sampling_and_refiner_match_reference(ref, restorer, use_cache):
    e = ref["expected"]
    out = restorer.restore(ref["inputs"]["degraded"], use_cache=use_cache)
    # the indices are equal, so the quantised latent is the same sum of codewords (up to float rounding)
    torch.testing.assert_close(out.f_hat.flatten(2).transpose(1, 2), e["f_hat_pre_refine_BLC"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.f_refined, e["f_hat_refined_BChw"], atol=ATOL, rtol=0)
    torch.testing.assert_close((out.image + 1) / 2, e["restored_img_01"], atol=ATOL, rtol=0)


def test_last_block_matches_reference(ref, restorer):
    vae = restorer.tokenizer
    out = restorer.prior.sample(vae.encode_condition(ref["inputs"]["degraded"]), vae.quantize)
    torch.testing.assert_close(out.last_block, ref["expected"]["last_block"], atol=ATOL, rtol=0)
