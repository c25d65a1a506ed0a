"""Activation checkpointing for the transformer stages (prior and refiner), switched on from their configs.

Each wrapped module keeps only its inputs during the forward pass and recomputes its internals during the
backward pass (``torch.utils.checkpoint`` with ``use_reentrant=False``), trading about one extra forward for
the memory of the attention scores and FFN hidden states. The outputs and gradients are the same as without
it (the recomputation repeats the same deterministic operations; dropout is replayed with the saved RNG state).

The wrapping replaces the *instance's* ``forward`` and leaves the module tree and its ``state_dict`` keys alone,
so checkpoints load the same with the switch on or off. It only acts while autograd records (training); under
``torch.no_grad`` / ``inference_mode`` (validation, sampling) the plain forward runs.
"""
from __future__ import annotations

import functools
from typing import Iterable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

_MARK = "_rvar_checkpointed_forward"


def enable_activation_checkpointing(modules: Iterable[nn.Module]) -> int:
    """Recompute each of ``modules``'s activations in the backward pass; returns how many were wrapped.

    Calling it twice on the same module wraps it once.
    """
    count = 0
    for module in modules:
        if getattr(module, _MARK, False):
            continue
        plain = module.forward  # the bound class method

        @functools.wraps(plain)
        def forward(*args, _plain=plain, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_plain, *args, use_reentrant=False, **kwargs)
            return _plain(*args, **kwargs)

        module.forward = forward
        setattr(module, _MARK, True)
        count += 1
    return count


def refiner_units(refiner: nn.Module) -> list:
    """The refiner's checkpointed units: each layer's self-attention, FFN and cross-attention.

    The refiner's layers are ``ModuleList``s of those three without a forward of their own, so each part is a unit.
    """
    return [part for layer in refiner.transformer.layers for part in layer]
