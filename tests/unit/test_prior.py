"""The prior: every registered attention variant (forward, backward, cache on == cache off), sampling options."""
from __future__ import annotations

import pytest
import torch

from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.tokenizer import VQVAE, TokenizerConfig
from rvar.registry import ATTENTION


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VQVAE(TokenizerConfig.tiny()).eval()


def _prior(attention: str) -> RestoreVARPrior:
    torch.manual_seed(0)
    prior = RestoreVARPrior(PriorConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2, 3, 4), vocab_size=64,
                                        z_channels=32, attention=attention))
    # the zero-initialised gains would hide the condition path: open them for the test
    with torch.no_grad():
        prior.global_embed_gain.fill_(0.3)
        for block in prior.blocks:
            block.cross_attn.gain.fill_(0.5)
    return prior


def test_builtin_attention_variants_are_registered():
    assert {"l2norm", "sdpa"} <= set(ATTENTION.list())


@pytest.mark.parametrize("attention", ATTENTION.list())
def test_attention_variant_forward_backward_and_cache(attention, vae):
    prior = _prior(attention)
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        idx = vae.img_to_indices(img)
        x_in = vae.quantize.teacher_forcing_input(idx)
        cond = vae.encode_condition(torch.rand(2, 3, 64, 64) * 2 - 1)
    logits = prior(x_in, cond)
    assert logits.shape == (2, prior.L, 64) and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.cat(idx, 1).flatten())
    loss.backward()
    grads = [p.grad for p in prior.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert prior.blocks[0].cross_attn.q_proj.weight.grad.abs().sum() > 0
    prior.eval()
    cached = prior.sample(cond, vae.quantize, use_cache=True)
    uncached = prior.sample(cond, vae.quantize, use_cache=False)
    for a, b in zip(cached.indices, uncached.indices, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(cached.last_block, uncached.last_block, atol=1e-5, rtol=0)
    # teacher forcing on the sampled tokens reproduces the sampler's logits (same block-causal maths)
    tf_logits = prior(vae.quantize.teacher_forcing_input(cached.indices), cond)
    assert torch.equal(tf_logits.argmax(-1), torch.cat(cached.indices, 1))


def test_condition_changes_the_output(vae):
    prior = _prior("l2norm").eval()
    a = prior.sample(vae.encode_condition(torch.full((1, 3, 64, 64), -0.8)), vae.quantize)
    b = prior.sample(vae.encode_condition(torch.full((1, 3, 64, 64), 0.8)), vae.quantize)
    assert not torch.equal(a.last_block, b.last_block)


def test_stochastic_sampling_is_reproducible_from_the_generator(vae):
    prior = _prior("l2norm").eval()
    cond = vae.encode_condition(torch.rand(2, 3, 64, 64) * 2 - 1)

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.cat(prior.sample(cond, vae.quantize, top_k=10, top_p=0.9, temperature=1.5, generator=g).indices, 1)

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_presets_have_the_published_sizes():
    assert PriorConfig.d16_512().num_tokens == 2240
    assert PriorConfig.d16_256().num_tokens == 680
    with pytest.raises(ValueError):
        PriorConfig(embed_dim=100, num_heads=3)


def test_attention_names_not_built_in_come_from_the_lookup():
    from rvar.errors import UserError
    from rvar.nn.prior.attention import PlainAttention, build_attention_variant

    assert isinstance(build_attention_variant("mine", lookup={"mine": PlainAttention}.__getitem__), PlainAttention)
    with pytest.raises(UserError, match="unknown attention 'nope'; known: .*l2norm"):
        build_attention_variant("nope")  # the default lookup is the registry
