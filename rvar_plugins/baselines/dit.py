"""A DiT-style latent denoiser for the latent-diffusion baseline (plain torch, no Lightning).

Paper: Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT, ICCV 2023): transformer blocks whose
LayerNorms are modulated by the timestep (adaLN-Zero). Reference code: facebookresearch/DiT ``models.py``.
Here it works on the rvar tokenizer's continuous latent (patch size 1: one token per latent position) and is
conditioned on the degraded image's latent either by channel concatenation at the input or by a
cross-attention layer in every block (``conditioning``), so RestoreVAR's prior can be compared with a diffusion
model of the same size on the same latent.

Shapes: B batch, N latent tokens (h*w), C width, Cv latent channels, h/w latent side.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from rvar.nn import count_parameters

CONDITIONINGS = ("concat", "cross")


@dataclass
class DenoiserConfig:
    """Sizes of :class:`LatentDiT`.

    Args:
        depth: transformer blocks. width: token width C. num_heads: attention heads.
        mlp_ratio: FFN hidden size / C.
        z_channels: the tokenizer's latent channels Cv.
        conditioning: ``concat`` (degraded latent stacked on the noisy one) or ``cross`` (cross-attention).
        context: also attend to a second set of tokens, the whole degraded image's latent (resized to the native
            size) when a larger image is restored tile by tile: the same whole-image context as the RestoreVAR
            refiner's ``in_dim_context``, appended to the self-attention sequence.
    """

    depth: int = 2
    width: int = 128
    num_heads: int = 2
    mlp_ratio: float = 4.0
    z_channels: int = 32
    conditioning: str = "concat"
    context: bool = False

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    # ---- presets -------------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, conditioning: str = "concat") -> "DenoiserConfig":
        """About the tiny prior's size (0.68 M parameters): width 128, 2 heads."""
        return cls.match_parameters(678_379, width=128, num_heads=2, conditioning=conditioning)

    @classmethod
    def d16(cls, conditioning: str = "concat") -> "DenoiserConfig":
        """The d16 prior's size (274 M parameters; width 1024, 16 heads), for the speed comparison."""
        return cls.match_parameters(273_986_097, width=1024, num_heads=16, conditioning=conditioning)

    @classmethod
    def match_parameters(cls, target: int, width: int, num_heads: int, conditioning: str = "concat",
                         z_channels: int = 32, mlp_ratio: float = 4.0) -> "DenoiserConfig":
        """The depth whose parameter count is closest to ``target`` at the given width."""
        base = cls(depth=0, width=width, num_heads=num_heads, mlp_ratio=mlp_ratio, z_channels=z_channels,
                   conditioning=conditioning)
        fixed = denoiser_parameters(base)
        per_block = denoiser_parameters(cls(**{**base.to_dict(), "depth": 1})) - fixed
        return cls(**{**base.to_dict(), "depth": max(1, round((target - fixed) / per_block))})


def denoiser_parameters(config: DenoiserConfig) -> int:
    """Parameters of ``LatentDiT(config)``, built on the meta device (no memory)."""
    with torch.device("meta"):
        return count_parameters(LatentDiT(config))


# ---- 1. embeddings -----------------------------------------------------------------------------------------
def timestep_features(t_B: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t_B.device, dtype=torch.float32) / half)
    args = t_B.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@lru_cache(maxsize=8)
def _sincos_2d(width: int, h: int, w: int) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding (N, C), as in DiT (half the channels per axis)."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    out = [f(pos.reshape(-1, 1) * omega) for pos in (ys, xs) for f in (torch.sin, torch.cos)]
    emb = torch.cat(out, dim=1)
    return F.pad(emb, (0, width - emb.shape[1])).float()


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, features: int = 256) -> None:
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t_B: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_features(t_B, self.features).to(self.mlp[0].weight.dtype))


# ---- 2. blocks ---------------------------------------------------------------------------------------------
def modulate(x_BNC: torch.Tensor, shift_BC: torch.Tensor, scale_BC: torch.Tensor) -> torch.Tensor:
    return x_BNC * (1 + scale_BC.unsqueeze(1)) + shift_BC.unsqueeze(1)


class Attention(nn.Module):
    """Multi-head attention through ``scaled_dot_product_attention``; self-attention when ``context`` is None."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x_BNC: torch.Tensor, context_BSC: Optional[torch.Tensor] = None) -> torch.Tensor:
        context_BSC = x_BNC if context_BSC is None else context_BSC
        q = rearrange(self.q(x_BNC), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(context_BSC), "b s (two h d) -> two b h s d", two=2, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class DiTBlock(nn.Module):
    """adaLN-Zero block: self-attention, optional cross-attention to the condition, MLP."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        C = cfg.width
        self.norm1 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(C, cfg.num_heads)
        self.cross = cfg.conditioning == "cross"
        if self.cross:
            self.norm_cross = nn.LayerNorm(C, eps=1e-6)
            self.cross_attn = Attention(C, cfg.num_heads)
        self.norm2 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        hidden = round(C * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(C, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, C))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))

    def forward(self, x_BNC: torch.Tensor, c_BC: torch.Tensor, cond_BSC: Optional[torch.Tensor]) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c_BC).chunk(6, dim=1)
        x_BNC = x_BNC + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x_BNC), shift1, scale1))
        if self.cross:
            x_BNC = x_BNC + self.cross_attn(self.norm_cross(x_BNC), cond_BSC)
        return x_BNC + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x_BNC), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x_BNC: torch.Tensor, c_BC: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c_BC).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x_BNC), shift, scale))


# ---- 3. the denoiser ---------------------------------------------------------------------------------------
class LatentDiT(nn.Module):
    """Predicts the noise in a noisy clean-image latent, given the timestep and the degraded image's latent.

    Args:
        config: sizes and conditioning, see :class:`DenoiserConfig` and its presets.
    """

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = cfg = config
        in_channels = 2 * cfg.z_channels if cfg.conditioning == "concat" else cfg.z_channels
        self.x_embed = nn.Linear(in_channels, cfg.width)
        self.t_embed = TimestepEmbedder(cfg.width)
        if cfg.conditioning == "cross":
            self.cond_embed = nn.Linear(cfg.z_channels, cfg.width)
        if cfg.context:
            self.context_embed = nn.Linear(cfg.z_channels, cfg.width)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final = FinalLayer(cfg.width, cfg.z_channels)
        self.init_weights()

    def init_weights(self) -> None:
        """DiT's initialisation: xavier linears, normal timestep MLP, zero adaLN and output (identity blocks)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for layer in (self.t_embed.mlp[0], self.t_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if block.cross:
                nn.init.zeros_(block.cross_attn.proj.weight)  # cross-attention starts switched off
        for layer in (self.final.adaLN_modulation[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x_BChw: torch.Tensor, t_B: torch.Tensor, cond_BChw: torch.Tensor,
                context_BChw: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Noise prediction (B, Cv, h, w) for noisy latents ``x``, timesteps ``t`` and degraded latents ``cond``;
        ``context``: the whole degraded image's latent, required iff ``config.context``."""
        if self.config.context != (context_BChw is not None):
            raise ValueError("this denoiser " + ("needs" if self.config.context else "takes no") +
                             " whole-image context")
        B, _, h, w = x_BChw.shape
        if t_B.ndim == 0:
            t_B = t_B.expand(B)
        pos_NC = _sincos_2d(self.config.width, h, w).to(x_BChw.device, x_BChw.dtype)
        cond_BSC = None
        if self.config.conditioning == "concat":
            x_BChw = torch.cat([x_BChw, cond_BChw], dim=1)
        else:
            cond_BSC = self.cond_embed(rearrange(cond_BChw, "b c h w -> b (h w) c")) + pos_NC
        x_BNC = self.x_embed(rearrange(x_BChw, "b c h w -> b (h w) c")) + pos_NC  # (B, N, C)
        N = x_BNC.shape[1]
        if context_BChw is not None:  # the context tokens share the positions; only the latent's come out
            context_BNC = self.context_embed(rearrange(context_BChw, "b c h w -> b (h w) c")) + pos_NC
            x_BNC = torch.cat([x_BNC, context_BNC.expand(B, -1, -1)], dim=1)
        c_BC = self.t_embed(t_B)
        for block in self.blocks:
            x_BNC = block(x_BNC, c_BC, cond_BSC)
        return rearrange(self.final(x_BNC[:, :N], c_BC), "b (h w) c -> b c h w", h=h, w=w)
