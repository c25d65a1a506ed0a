"""Attention layers of the RestoreVAR prior, with pluggable attention variants and 2D RoPE.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), section 3: self-attention under the
block-causal mask, then cross-attention in every block to the degraded image's latent.
Reference code: sudraj2002/RestoreVAR ``models/basic_var.py``; RoPE layout from VARSR.

An *attention variant* decides how q and k are normalised and scaled before ``F.scaled_dot_product_attention``;
it may own parameters, which it registers on the host layer so the checkpoint keys stay those of the reference
(``blocks.0.attn.scale_mul_1H11``). The two built-ins (``l2norm``, the published weights' variant, and ``sdpa``)
live here; any other name is a plugin (registry kind ``attention``), looked up only when a network asks for it.

Shapes: B batch, H heads, L/l query tokens, S key tokens, c head dim, C model width.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class AttentionVariant:
    """Base class of attention variants. Subclasses override :meth:`init_parameters`, :meth:`prepare_q` and :meth:`prepare_k`."""

    def init_parameters(self, host: nn.Module, num_heads: int, head_dim: int) -> None:
        """Register any learnable parameters on ``host`` (the attention layer)."""

    def prepare_q(self, host: nn.Module, q_BHLc: torch.Tensor) -> Tuple[torch.Tensor, float]:
        """Return (q, softmax scale) before RoPE and scaled-dot-product attention."""
        raise NotImplementedError

    def prepare_k(self, host: nn.Module, k_BHSc: torch.Tensor) -> torch.Tensor:
        """Return k before RoPE; must not depend on the queries (cached keys are reused across scales)."""
        return k_BHSc

    def attend(self, q_BHLc, k_BHSc, v_BHSc, attn_mask: Optional[torch.Tensor], scale: float, dropout_p: float):
        return F.scaled_dot_product_attention(q_BHLc, k_BHSc, v_BHSc, attn_mask=attn_mask, dropout_p=dropout_p,
                                              scale=scale)


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


class PlainAttention(AttentionVariant):
    """Plain scaled-dot-product attention: softmax(q k^T / sqrt(head_dim)) v, no extra parameters."""

    def prepare_q(self, host: nn.Module, q_BHLc: torch.Tensor) -> Tuple[torch.Tensor, float]:
        return q_BHLc, 1.0 / math.sqrt(q_BHLc.shape[-1])


BUILTIN_VARIANTS: Dict[str, type] = {"l2norm": L2NormAttention, "sdpa": PlainAttention}


def registered_variant(name: str) -> Any:
    """A plugin variant from rvar's registry; imported here, on first use of a name that is not built in,
    so building a network with a built-in variant never loads the plugin stack."""
    from rvar.registry import ATTENTION

    return ATTENTION.get(name)


def build_attention_variant(name: str, lookup: Callable[[str], Any] = registered_variant) -> AttentionVariant:
    """The variant called ``name``: a built-in by plain mapping, anything else from ``lookup`` (the registry)."""
    variant = BUILTIN_VARIANTS.get(name) or lookup(name)
    return variant() if isinstance(variant, type) else variant


# ---- 2D rotary position embedding ------------------------------------------------------------------------
def rope_angles_2d(head_dim: int, patch_nums: Sequence[int], theta: float = 10000.0) -> torch.Tensor:
    """Angles (L, c/2) for every token of every scale: rows use the first c/4 pairs, columns the rest.

    Token (i, j) of a pn x pn map sits at (i, j) * grid / pn on the grid of the last scale, so all scales
    share one coordinate frame.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    grid = patch_nums[-1]
    rows, cols = [], []
    for pn in patch_nums:
        ii, jj = torch.meshgrid(torch.arange(pn), torch.arange(pn), indexing="ij")
        rows.append(ii.flatten() / pn * grid)
        cols.append(jj.flatten() / pn * grid)
    return torch.cat([torch.outer(torch.cat(rows), freqs), torch.outer(torch.cat(cols), freqs)], dim=1).float()


def apply_rope(x_BHLc: torch.Tensor, cos_Lk: torch.Tensor, sin_Lk: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (2k, 2k+1) by the angle of pair k (complex multiplication, in fp32)."""
    dtype = x_BHLc.dtype
    x = x_BHLc.float().unflatten(-1, (-1, 2))
    re, im = x[..., 0], x[..., 1]
    out = torch.stack((re * cos_Lk - im * sin_Lk, re * sin_Lk + im * cos_Lk), dim=-1)
    return out.flatten(-2).to(dtype)


# ---- self- and cross-attention layers ----------------------------------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head self-attention with q/v biases, RoPE and an optional KV cache (used when sampling)."""

    def __init__(self, embed_dim: int, num_heads: int, variant: str = "l2norm", attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.variant = build_attention_variant(variant)
        self.variant.init_parameters(self, num_heads, self.head_dim)
        self.mat_qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim), persistent=False)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        self.attn_drop = attn_drop
        self.caching = False
        self.cached_k = self.cached_v = None

    def kv_caching(self, enable: bool) -> None:
        self.caching, self.cached_k, self.cached_v = enable, None, None

    def forward(self, x_BLC: torch.Tensor, attn_bias: Optional[torch.Tensor], cos: torch.Tensor,
                sin: torch.Tensor) -> torch.Tensor:
        B, L, C = x_BLC.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x_BLC, self.mat_qkv.weight, bias).view(B, L, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, c)
        q, scale = self.variant.prepare_q(self, q)
        q, k = apply_rope(q, cos, sin), apply_rope(self.variant.prepare_k(self, k), cos, sin)
        if self.caching:
            if self.cached_k is not None:
                k = torch.cat((self.cached_k, k), dim=2)
                v = torch.cat((self.cached_v, v), dim=2)
            self.cached_k, self.cached_v = k, v
        mask = None if attn_bias is None else attn_bias.to(q.dtype)
        out = self.variant.attend(q, k, v, mask, scale, self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, L, C)))


class CrossAttention(nn.Module):
    """Cross-attention from the image tokens to the condition tokens, zero-initialised scalar gain.

    While sampling, the projected condition keys/values are the same at every scale: they are computed once
    and cached (``kv_caching``).
    """

    def __init__(self, embed_dim: int, num_heads: int, variant: str = "l2norm", attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.variant = build_attention_variant(variant)
        self.variant.init_parameters(self, num_heads, self.head_dim)
        self.gain = nn.Parameter(torch.tensor(0.0))
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.kv_proj = nn.Linear(embed_dim, 2 * embed_dim, bias=False)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.out_dropout = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        self.norm_q = nn.LayerNorm(embed_dim)
        self.norm_kv = nn.LayerNorm(embed_dim)
        self.attn_drop = attn_drop
        self.caching = False
        self.cached_kv = None

    def kv_caching(self, enable: bool) -> None:
        self.caching, self.cached_kv = enable, None

    def _keys_values(self, cond_BSC: torch.Tensor, cos_k, sin_k):
        k, v = self.kv_proj(self.norm_kv(cond_BSC)).chunk(2, dim=-1)
        B, S, C = k.shape
        k = k.view(B, S, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, S, self.num_heads, self.head_dim).transpose(1, 2)
        return apply_rope(self.variant.prepare_k(self, k), cos_k, sin_k), v

    def forward(self, x_BLC: torch.Tensor, cond_BSC: torch.Tensor, cos_q, sin_q, cos_k, sin_k) -> torch.Tensor:
        B, L, C = x_BLC.shape
        q = self.q_proj(self.norm_q(x_BLC)).view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        if self.caching and self.cached_kv is not None:
            k, v = self.cached_kv
        else:
            k, v = self._keys_values(cond_BSC, cos_k, sin_k)
            if self.caching:
                self.cached_kv = (k, v)
        q, scale = self.variant.prepare_q(self, q)
        q = apply_rope(q, cos_q, sin_q)
        out = self.variant.attend(q, k, v, None, scale, self.attn_drop if self.training else 0.0)
        return self.out_dropout(self.gain * self.out_proj(out.transpose(1, 2).reshape(B, L, C)))
