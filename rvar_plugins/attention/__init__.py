"""Built-in attention variants (registry kind ``attention``).

Both run through ``torch.nn.functional.scaled_dot_product_attention`` and work with the prior's KV cache.
A third-party variant subclasses :class:`rvar.nn.prior.attention.AttentionVariant` and registers itself with
``@rvar.registry.register_attention("name")``; choose it in YAML with ``attention: name`` in the prior config.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from rvar.nn.prior.attention import AttentionVariant
from rvar.registry import register_attention


@register_attention("l2norm")
class L2NormAttention(AttentionVariant):
    """RestoreVAR's (and VAR's) attention: L2-normalised q and k, learnable per-head scale (init 4, max 100).

    The softmax scale is 1: the logit range is set by ``scale_mul_1H11`` alone, which keeps attention stable
    in long multi-scale sequences. Parameters: ``scale_mul_1H11`` (1, heads, 1, 1), stored as a log.
    """

    max_log_scale = math.log(100.0)

    def init_parameters(self, host: nn.Module, num_heads: int, head_dim: int) -> None:
        host.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())

    def prepare_q(self, host: nn.Module, q_BHLc: torch.Tensor) -> Tuple[torch.Tensor, float]:
        scale_mul = host.scale_mul_1H11.clamp_max(self.max_log_scale).exp()
        return F.normalize(q_BHLc, dim=-1) * scale_mul, 1.0

    def prepare_k(self, host: nn.Module, k_BHSc: torch.Tensor) -> torch.Tensor:
        return F.normalize(k_BHSc, dim=-1)


@register_attention("sdpa")
class PlainAttention(AttentionVariant):
    """Plain scaled-dot-product attention: softmax(q k^T / sqrt(head_dim)) v, no extra parameters."""

    def prepare_q(self, host: nn.Module, q_BHLc: torch.Tensor) -> Tuple[torch.Tensor, float]:
        return q_BHLc, 1.0 / math.sqrt(q_BHLc.shape[-1])
