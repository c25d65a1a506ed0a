"""Latent refiner: turns the prior's quantised latent into a continuous one.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), section 3.3: a transformer over the
quantised latent tokens that cross-attends to the prior's last-block hidden states and predicts a residual.
Reference code: sudraj2002/RestoreVAR ``models/vae_refiner_rope.py`` (``Refiner``); parameter names follow
its ``vae_refiner.*`` keys.

Shapes: B batch, N latent tokens (h*w), M condition tokens (the prior's L), D width, Cv latent channels.

rvar options (off in the released model): ``in_dim_degraded > 0`` also feeds the degraded image's continuous
latent ``quant_conv(encoder(degraded))`` (one token per latent position, the space of the refiner's target)
into the refiner's input, added after its own projection; ``residual_from_degraded`` then adds the predicted
residual to that latent instead of to f_hat, so the refiner starts as the tokenizer's round trip of the degraded
image (which mild degradations leave close to the clean one) and learns what to change. The released refiner sees the degraded image only through the prior's hidden states; a small
prior trained for minutes passes little detail that way, and the direct path lets the refiner recover what
the quantised latent lost (the continuous path is what lifts RestoreVAR above its VQ ceiling).
``blend_degraded`` adds the residual to a per-token blend instead, ``f_hat + m (degraded - f_hat)`` with ``m`` in
[0, 1] from a linear head on the refiner's last features (starting at one half), so the refiner can keep the prior's
latent where it restores and the degraded latent where the latent path loses detail (noise, blur, JPEG). Tried in
a demo's budget (BENCHMARKS.md, ninth round), it raised noise, blur and JPEG but lost haze, snow and low light, and
is off in every recipe.
``in_dim_context > 0`` appends the continuous latent of the *whole* degraded image, resized to the native size,
to the tokens the refiner cross-attends to: a model that restores a large image tile by tile otherwise cannot tell
a dark scene (a night sky) from a low-light tile, and brightens both (the released model sees the whole image).
``reads_prior = False`` is the ablation that measures what the prior contributes: the refiner ignores the prior's
f_hat and hidden states (the restorer then does not sample the prior at all) and restores from the degraded
latent alone (it needs ``residual_from_degraded``); its cross-attention reads only the learned condition positions
(and the whole-image context, if any).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from rvar.nn.prior.config import PriorConfig


@dataclass
class RefinerConfig:
    """Sizes of :class:`LatentRefiner`. ``seq_len`` = latent tokens, ``seq_len_cond`` = the prior's L."""

    seq_len: int = 1024
    seq_len_cond: int = 2240
    in_dim: int = 32
    in_dim_cond: int = 1024
    out_dim: int = 32
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_dim: int = 768
    dropout: float = 0.0
    in_dim_degraded: int = 0  # 0: RestoreVAR's refiner; > 0: degraded-latent input of this width (see above)
    residual_from_degraded: bool = False  # residual added to the degraded latent, not to f_hat (see above)
    in_dim_context: int = 0  # 0: none; > 0: whole-image context latent of this width, seq_len tokens (see above)
    reads_prior: bool = True  # False: the no-prior ablation (see above)
    blend_degraded: bool = False  # the residual goes on a learned per-token blend of f_hat and the degraded latent

    def __post_init__(self) -> None:
        if self.blend_degraded and (self.residual_from_degraded or self.in_dim_degraded != self.out_dim):
            raise ValueError("blend_degraded needs the degraded latent as input (in_dim_degraded = out_dim) and "
                             "residual_from_degraded false")
        if not self.reads_prior and not self.residual_from_degraded:
            raise ValueError("a refiner that does not read the prior (reads_prior false) needs residual_from_degraded")
        if self.residual_from_degraded and self.in_dim_degraded != self.out_dim:
            raise ValueError("residual_from_degraded needs the degraded latent as input (in_dim_degraded = out_dim)")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def d16_512(cls) -> "RefinerConfig":
        """RestoreVAR's released refiner (22,967,616 parameters)."""
        return cls()

    @classmethod
    def for_prior(cls, prior: PriorConfig, **sizes: Any) -> "RefinerConfig":
        """A refiner sized for ``prior`` (with its tokenizer's geometry); ``sizes``: the other fields."""
        return cls(seq_len=prior.patch_nums[-1] ** 2, seq_len_cond=prior.num_tokens, in_dim=prior.z_channels,
                   in_dim_cond=prior.embed_dim, out_dim=prior.z_channels, **sizes)

    @classmethod
    def tiny(cls) -> "RefinerConfig":
        """The reference parity size (64x64 images, prior width 128, L = 30)."""
        return cls.for_prior(PriorConfig.tiny(), dim=64, depth=2, heads=2, mlp_dim=128)


def _heads(x_BND: torch.Tensor, heads: int) -> torch.Tensor:
    B, N, D = x_BND.shape
    return x_BND.view(B, N, heads, D // heads).transpose(1, 2)


def _merge(x_BHNd: torch.Tensor) -> torch.Tensor:
    B, H, N, d = x_BHNd.shape
    return x_BHNd.transpose(1, 2).reshape(B, N, H * d)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        # the reference drops the output projection for a single full-width head
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout)) if heads > 1 else nn.Identity()
        self.dropout = dropout

    def forward(self, x_BND: torch.Tensor) -> torch.Tensor:
        q, k, v = (_heads(t, self.heads) for t in self.to_qkv(self.norm(x_BND)).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(_merge(out))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        # indices 0..5 match the reference's Sequential (LayerNorm, Linear, GELU, Dropout, Linear, Dropout)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x_BND: torch.Tensor) -> torch.Tensor:
        return self.net(x_BND)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x_BND: torch.Tensor, cond_BMD: torch.Tensor) -> torch.Tensor:
        q = _heads(self.to_q(self.norm_q(x_BND)), self.heads)
        k, v = (_heads(t, self.heads) for t in self.to_kv(self.norm_kv(cond_BMD)).chunk(2, dim=-1))
        return self.to_out(_merge(F.scaled_dot_product_attention(q, k, v)))


class Transformer(nn.Module):
    def __init__(self, cfg: RefinerConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim)
        self.layers = nn.ModuleList([
            nn.ModuleList([SelfAttention(cfg.dim, cfg.heads, cfg.dropout),
                           FeedForward(cfg.dim, cfg.mlp_dim, cfg.dropout),
                           CrossAttention(cfg.dim, cfg.heads)])
            for _ in range(cfg.depth)
        ])

    def forward(self, x_BND: torch.Tensor, cond_BMD: torch.Tensor) -> torch.Tensor:
        for attn, ffn, cross in self.layers:
            x_BND = x_BND + attn(x_BND)
            x_BND = x_BND + ffn(x_BND)
            x_BND = x_BND + cross(x_BND, cond_BMD)
        return self.norm(x_BND)


class LatentRefiner(nn.Module):
    """f_hat tokens (B, N, Cv) + prior hidden states (B, M, C) -> refined latent tokens (B, N, Cv).

    Args:
        config: sizes, see :class:`RefinerConfig`.
    """

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        # 1. input normalisation and projections
        self.norm_in = nn.LayerNorm(cfg.in_dim)
        self.norm_in_cond = nn.LayerNorm(cfg.in_dim_cond)
        self.proj_in = nn.Linear(cfg.in_dim, cfg.dim, bias=False)
        self.proj_in_cond = nn.Linear(cfg.in_dim_cond, cfg.dim, bias=False)
        if cfg.in_dim_degraded > 0:
            self.norm_in_degraded = nn.LayerNorm(cfg.in_dim_degraded)
            self.proj_in_degraded = nn.Linear(cfg.in_dim_degraded, cfg.dim, bias=False)
        if cfg.in_dim_context > 0:
            self.norm_in_context = nn.LayerNorm(cfg.in_dim_context)
            self.proj_in_context = nn.Linear(cfg.in_dim_context, cfg.dim, bias=False)
            self.pos_embedding_context = nn.Parameter(torch.zeros(1, cfg.seq_len, cfg.dim))
        # 2. learned positions for both sequences
        self.pos_embedding = nn.Parameter(torch.zeros(1, cfg.seq_len, cfg.dim))
        self.pos_embedding_cond = nn.Parameter(torch.zeros(1, cfg.seq_len_cond, cfg.dim))
        # 3. body and output projection
        self.transformer = Transformer(cfg)
        self.proj_out = nn.Linear(cfg.dim, cfg.out_dim, bias=False)
        if cfg.blend_degraded:  # per token: how much of the way from f_hat to the degraded latent the base moves
            self.proj_blend = nn.Linear(cfg.dim, 1)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        nn.init.trunc_normal_(self.pos_embedding_cond, std=0.02)
        if self.config.in_dim_context > 0:
            nn.init.trunc_normal_(self.pos_embedding_context, std=0.02)
        # start as the identity map: the residual begins at zero and grows with training
        nn.init.zeros_(self.proj_out.weight)
        if self.config.blend_degraded:  # the blend starts at one half everywhere
            nn.init.zeros_(self.proj_blend.weight)
            nn.init.zeros_(self.proj_blend.bias)

    @property
    def uses_degraded(self) -> bool:
        return self.config.in_dim_degraded > 0

    @property
    def uses_context(self) -> bool:
        return self.config.in_dim_context > 0

    def forward(self, f_hat_BNC: torch.Tensor, last_block_BMC: torch.Tensor,
                degraded_BNC: Optional[torch.Tensor] = None,
                context_BNC: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``degraded_BNC``: the degraded image's continuous latent, required iff ``in_dim_degraded > 0``;
        ``context_BNC``: the whole degraded image's (resized to the native size), required iff
        ``in_dim_context > 0``."""
        N, M = f_hat_BNC.shape[1], last_block_BMC.shape[1]
        if N != self.config.seq_len or M > self.config.seq_len_cond:
            raise ValueError(f"refiner built for {self.config.seq_len} latent tokens and up to "
                             f"{self.config.seq_len_cond} condition tokens, got {N} and {M}")
        if self.uses_degraded != (degraded_BNC is not None):
            raise ValueError("this refiner " + ("needs" if self.uses_degraded else "takes no") +
                             " degraded-latent input (RefinerConfig.in_dim_degraded)")
        if not self.config.reads_prior:  # the ablation: whatever the caller passes, the prior's outputs are not read
            f_hat_BNC, last_block_BMC = torch.zeros_like(f_hat_BNC), torch.zeros_like(last_block_BMC)
        x = self.proj_in(self.norm_in(f_hat_BNC)) + self.pos_embedding[:, :N]
        if degraded_BNC is not None:
            x = x + self.proj_in_degraded(self.norm_in_degraded(degraded_BNC))
        if self.uses_context != (context_BNC is not None):
            raise ValueError("this refiner " + ("needs" if self.uses_context else "takes no") +
                             " whole-image context input (RefinerConfig.in_dim_context)")
        cond = self.proj_in_cond(self.norm_in_cond(last_block_BMC)) + self.pos_embedding_cond[:, :M]
        if context_BNC is not None:
            context = self.proj_in_context(self.norm_in_context(context_BNC)) + self.pos_embedding_context[:, :N]
            cond = torch.cat([cond, context], dim=1)
        h_BND = self.transformer(x, cond)
        if self.config.blend_degraded:
            base_BNC = f_hat_BNC + torch.sigmoid(self.proj_blend(h_BND)) * (degraded_BNC - f_hat_BNC)
        else:
            base_BNC = degraded_BNC if self.config.residual_from_degraded else f_hat_BNC
        return base_BNC + self.proj_out(h_BND)
