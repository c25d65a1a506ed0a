"""Activation checkpointing (issue #13.2): same outputs and gradients as without it, state_dict unchanged."""
from __future__ import annotations

import copy

import torch

from rvar.nn.checkpointing import enable_activation_checkpointing, refiner_units
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.refiner import LatentRefiner, RefinerConfig


def _grads(module: torch.nn.Module) -> dict:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def _compare(plain: torch.nn.Module, wrapped: torch.nn.Module, run) -> None:
    out_plain, out_wrapped = run(plain), run(wrapped)
    torch.testing.assert_close(out_wrapped, out_plain, rtol=0, atol=0)
    out_plain.square().mean().backward()
    out_wrapped.square().mean().backward()
    g_plain, g_wrapped = _grads(plain), _grads(wrapped)
    assert g_plain.keys() == g_wrapped.keys() and len(g_plain) > 10
    for name in g_plain:
        torch.testing.assert_close(g_wrapped[name], g_plain[name], rtol=1e-6, atol=1e-7, msg=name)


def test_prior_gradients_match_with_checkpointing():
    torch.manual_seed(0)
    cfg = PriorConfig(depth=2, embed_dim=64, num_heads=2, patch_nums=(1, 2, 3), vocab_size=32, z_channels=32,
                      condition_gain_init=1.0, drop_path_rate=0.1)  # drop-path: the RNG state is replayed
    plain = RestoreVARPrior(cfg).train()
    wrapped = copy.deepcopy(plain)
    assert enable_activation_checkpointing(wrapped.blocks) == 2
    assert enable_activation_checkpointing(wrapped.blocks) == 0  # idempotent
    assert wrapped.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(2, cfg.num_tokens - 1, cfg.z_channels)
    cond = torch.randn(2, 9, cfg.z_channels)

    def run(model):
        torch.manual_seed(1)
        return model(x, cond)

    _compare(plain, wrapped, run)


def test_refiner_gradients_match_with_checkpointing():
    torch.manual_seed(0)
    plain = LatentRefiner(RefinerConfig.tiny()).train()
    torch.nn.init.normal_(plain.proj_out.weight, std=0.02)  # zero-initialised: give the body a gradient path
    wrapped = copy.deepcopy(plain)
    assert enable_activation_checkpointing(refiner_units(wrapped)) == 3 * plain.config.depth
    f_hat = torch.randn(2, 16, 32)
    cond = torch.randn(2, 30, 128)
    _compare(plain, wrapped, lambda model: model(f_hat, cond))


def test_checkpointing_is_inactive_without_autograd():
    """Validation and sampling run under no_grad/inference_mode: the plain forward, same values."""
    plain = LatentRefiner(RefinerConfig.tiny()).eval()
    torch.nn.init.normal_(plain.proj_out.weight, std=0.02)
    wrapped = copy.deepcopy(plain)
    enable_activation_checkpointing(refiner_units(wrapped))
    f_hat, cond = torch.randn(1, 16, 32), torch.randn(1, 30, 128)
    with torch.inference_mode():
        torch.testing.assert_close(wrapped(f_hat, cond), plain(f_hat, cond), rtol=0, atol=0)
