"""Invariants of the multi-scale residual quantiser and the tokenizer's training path."""
from __future__ import annotations

import pytest
import torch

from rvar.nn.tokenizer import VQVAE, TokenizerConfig


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VQVAE(TokenizerConfig.tiny()).eval()


@pytest.mark.parametrize("patch_nums", [(1, 2, 3, 4), (1, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("share", [0, 1, 4])
def test_indices_reproduce_the_quantised_latent(patch_nums, share):
    torch.manual_seed(0)
    vae = VQVAE(TokenizerConfig(vocab_size=64, ch=32, patch_nums=patch_nums, share_quant_resi=share)).eval()
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        idx, f_hats = vae.quantize.quantize(vae.encode_continuous(img))
        assert [t.shape[1] for t in idx] == [p * p for p in patch_nums]
        assert sum(t.shape[1] for t in idx) == vae.config.num_tokens
        torch.testing.assert_close(vae.quantize.indices_to_fhat(idx), f_hats[-1], atol=1e-5, rtol=0)
        if len(patch_nums) > 1:
            assert vae.quantize.teacher_forcing_input(idx).shape == (2, vae.config.num_tokens - patch_nums[0] ** 2, 32)


def test_autoregressive_steps_rebuild_teacher_forcing_input(vae):
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    q = vae.quantize
    with torch.no_grad():
        idx, f_hats = q.quantize(vae.encode_continuous(img))
        tf = q.teacher_forcing_input(idx)
        f_hat = torch.zeros_like(f_hats[0])
        pieces = []
        for si, pn in enumerate(q.patch_nums):
            f_hat, nxt = q.next_autoregressive_input(si, f_hat, q.lookup(idx[si], pn))
            if si < len(q.patch_nums) - 1:
                pieces.append(nxt.flatten(2).transpose(1, 2))
    torch.testing.assert_close(torch.cat(pieces, 1), tf, atol=1e-6, rtol=0)
    torch.testing.assert_close(f_hat, f_hats[-1], atol=1e-6, rtol=0)


def test_training_forward_has_gradients_everywhere_and_usage_stats():
    torch.manual_seed(0)
    vae = VQVAE(TokenizerConfig.tiny()).train()
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    out = vae(img)
    loss = (out.recon - img).abs().mean() + out.vq_loss
    loss.backward()
    assert torch.isfinite(loss)
    assert vae.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through reaches the encoder
    assert vae.quantize.embedding.weight.grad.abs().sum() > 0  # codebook term reaches the codebook
    assert vae.decoder.conv_out.weight.grad.abs().sum() > 0
    assert out.usage.shape == (4,) and 0 < out.perplexity <= 64
    assert vae.quantize.ema_vocab_hit_SV.sum() > 0


def test_usage_buffer_is_resized_when_patch_nums_differ():
    src = VQVAE(TokenizerConfig(vocab_size=64, ch=32, patch_nums=(1, 2, 3, 4)))
    dst = VQVAE(TokenizerConfig(vocab_size=64, ch=32, patch_nums=(1, 2, 4)))
    dst.load_state_dict(src.state_dict(), strict=True)
    assert dst.quantize.ema_vocab_hit_SV.shape == (3, 64)
    torch.testing.assert_close(dst.quantize.embedding.weight, src.quantize.embedding.weight)


def test_restart_codes_redraws_only_dead_codes_from_the_rows():
    q = VQVAE(TokenizerConfig(vocab_size=16, ch=32, patch_nums=(1, 2))).quantize
    q.ema_vocab_hit_SV.copy_(torch.rand(2, 16, generator=torch.Generator().manual_seed(0)) + 1)
    q.ema_vocab_hit_SV[:, :5] = 0.01
    dead = q.dead_codes()
    assert dead.tolist() == [True] * 5 + [False] * 11 and q.dead_codes(everything=True).all()
    f = torch.randn(3, 32, 2, 2, generator=torch.Generator().manual_seed(1))
    rows = q.residual_rows(f)
    assert rows.shape == (3 * (1 + 4), 32)
    torch.testing.assert_close(rows[:3], f.mean((2, 3)))  # scale 1: the pooled latent itself
    before = q.embedding.weight.detach().clone()
    q.restart_codes(dead, rows, torch.Generator().manual_seed(2), share=lambda t: t * 2)
    after = q.embedding.weight.detach()
    assert torch.equal(after[5:], before[5:]) and (q.ema_vocab_hit_SV[:, :5] == 0).all()
    nearest = (after[:5, None] / 2 - rows[None]).norm(dim=-1).amin(1)  # `share` doubled the drawn rows
    assert (nearest < 0.05 * rows.std() * 32 ** 0.5).all()
    again = VQVAE(TokenizerConfig(vocab_size=16, ch=32, patch_nums=(1, 2))).quantize
    again.restart_codes(dead, rows, torch.Generator().manual_seed(2), share=lambda t: t * 2)
    assert torch.equal(again.embedding.weight[:5], after[:5])  # the generator alone decides the draw


def test_channels_last_inference_matches_the_default_order(vae, monkeypatch):
    """Without gradients the tokenizer convolves in channels-last order (faster on CPUs); the results match the
    default order and come back in it, and a training pass (gradients on) keeps the default order."""
    import rvar.nn.tokenizer.vqvae as vqvae

    torch.manual_seed(1)
    img = torch.rand(3, 3, 64, 64) * 2 - 1
    latent = torch.randn(3, vae.config.z_channels, 8, 8)
    outputs = {}
    for flag in (True, False):
        monkeypatch.setattr(vqvae, "CHANNELS_LAST", flag)
        with torch.no_grad():
            outputs[flag] = (vae.decode(latent), vae.encode_condition(img), vae.encode_continuous(img),
                             vae.reconstruct(img))
    for fast, default in zip(outputs[True], outputs[False]):
        torch.testing.assert_close(fast, default, atol=1e-4, rtol=0)
        assert fast.stride() == default.stride()  # the same memory layout as before
    monkeypatch.setattr(vqvae, "CHANNELS_LAST", True)
    assert vqvae._channels_last(img).is_contiguous(memory_format=torch.channels_last) is False  # gradients on
    with torch.no_grad():
        assert vqvae._channels_last(img).is_contiguous(memory_format=torch.channels_last)
