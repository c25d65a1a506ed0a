"""Convolutional encoder and decoder of the tokenizer (LDM vq-f16 layout, 16x downsampling).

Paper: Tian et al., "Visual Autoregressive Modeling" (VAR, NeurIPS 2024), built on the VQGAN/LDM autoencoder.
Reference code: FoundationVision/VAR ``models/basic_vae.py``. Parameter names follow that layout so the
released ``vae_ch160v4096z32.pth`` loads with ``strict=True``.

Shapes: B batch, C channels, H/W image size, h/w latent size.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x_BCHW)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x_BCHW) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        qkv = self.qkv(self.norm(x_BCHW)).reshape(B, 3, C, H * W).transpose(2, 3)  # (B, 3, HW, C)
        q, k, v = qkv.unbind(1)
        out_BLC = F.scaled_dot_product_attention(q, k, v)  # scale C^-0.5, as the reference
        return x_BCHW + self.proj_out(out_BLC.transpose(1, 2).reshape(B, C, H, W))


class Downsample2x(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # asymmetric padding keeps the output at exactly half size (taming-transformers convention)
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2x(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Stage(nn.Module):
    """One resolution: ``block`` (residual blocks), ``attn`` (possibly empty), optional resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float, using_mid_sa: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels) if using_mid_sa else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _run_stage(stage: _Stage, h: torch.Tensor) -> torch.Tensor:
    for i, block in enumerate(stage.block):
        h = block(h)
        if len(stage.attn) > 0:
            h = stage.attn[i](h)
    return h


class Encoder(nn.Module):
    """Image (B, 3, H, W) in [-1, 1] -> latent (B, z_channels, H/16, W/16)."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, dropout: float,
                 z_channels: int, using_sa: bool = True, using_mid_sa: bool = True) -> None:
        super().__init__()
        self.num_resolutions = len(ch_mult)
        # 1. stem
        self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
        # 2. downsampling stages
        in_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(ch_mult):
            stage = _Stage()
            block_in, block_out = ch * in_mult[level], ch * mult
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if level == self.num_resolutions - 1 and using_sa:
                    stage.attn.append(AttnBlock(block_in))
            if level != self.num_resolutions - 1:
                stage.downsample = Downsample2x(block_in)
            self.down.append(stage)
        # 3. middle and head
        self.mid = _Middle(block_in, dropout, using_mid_sa)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, 1, 1)

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x_B3HW)
        for level, stage in enumerate(self.down):
            h = _run_stage(stage, h)
            if level != self.num_resolutions - 1:
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, z_channels, h, w) -> image (B, 3, 16h, 16w), unclamped."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, dropout: float,
                 z_channels: int, using_sa: bool = True, using_mid_sa: bool = True) -> None:
        super().__init__()
        self.num_resolutions = len(ch_mult)
        block_in = ch * ch_mult[-1]
        # 1. stem and middle
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = _Middle(block_in, dropout, using_mid_sa)
        # 2. upsampling stages, stored highest resolution first (the reference's order)
        stages = []
        for level in reversed(range(self.num_resolutions)):
            stage = _Stage()
            block_out = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if level == self.num_resolutions - 1 and using_sa:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample2x(block_in)
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)
        # 3. head
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 3, 3, 1, 1)

    def forward(self, z_BChw: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z_BChw))
        for level in reversed(range(self.num_resolutions)):
            stage = self.up[level]
            h = _run_stage(stage, h)
            if level != 0:
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
