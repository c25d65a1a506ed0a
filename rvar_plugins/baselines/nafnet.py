"""NAFNet: a nonlinear-activation-free U-Net, the regression baseline of rvar (plain torch, no Lightning).

Paper: Chen, Chu, Zhang, Sun, "Simple Baselines for Image Restoration" (NAFNet, ECCV 2022). Reference code:
megvii-research/NAFNet ``basicsr/models/archs/NAFNet_arch.py``. The block keeps the paper's ingredients:
LayerNorm over channels, depth-wise convolution, SimpleGate (x1 * x2 instead of an activation), simplified
channel attention, and learned residual scales (beta, gamma) starting at zero.

Shapes: B batch, C channels, H/W image side.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class NAFNetConfig:
    """Sizes of :class:`NAFNet`.

    Args:
        width: channels at full resolution (doubled at each encoder level).
        encoder_blocks: NAF blocks per encoder level (one 2x downsampling after each).
        middle_blocks: NAF blocks at the lowest resolution.
        decoder_blocks: NAF blocks per decoder level (mirrors ``encoder_blocks``).
    """

    width: int = 32
    encoder_blocks: Tuple[int, ...] = field(default_factory=lambda: (2, 2, 4, 8))
    middle_blocks: int = 12
    decoder_blocks: Tuple[int, ...] = field(default_factory=lambda: (2, 2, 2, 2))

    def __post_init__(self) -> None:
        self.encoder_blocks = tuple(int(n) for n in self.encoder_blocks)
        self.decoder_blocks = tuple(int(n) for n in self.decoder_blocks)
        if len(self.encoder_blocks) != len(self.decoder_blocks):
            raise ValueError("encoder_blocks and decoder_blocks need one entry per level each")

    @property
    def multiple(self) -> int:
        """Image sides must be a multiple of this (inputs are padded to it)."""
        return 2 ** len(self.encoder_blocks)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["encoder_blocks"], d["decoder_blocks"] = list(self.encoder_blocks), list(self.decoder_blocks)
        return d

    @classmethod
    def width32(cls) -> "NAFNetConfig":
        """The paper's NAFNet-width32 (about 29 M parameters), used for all-in-one restoration."""
        return cls()

    @classmethod
    def tiny(cls) -> "NAFNetConfig":
        """A CPU-sized NAFNet (about 0.1 M parameters) for tests and the tiny experiments."""
        return cls(width=8, encoder_blocks=(1, 1), middle_blocks=1, decoder_blocks=(1, 1))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of a (B, C, H, W) map."""

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return super().forward(x_BCHW.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        x1, x2 = x_BCHW.chunk(2, dim=1)
        return x1 * x2


class NAFBlock(nn.Module):
    def __init__(self, c: int, expand: int = 2) -> None:
        super().__init__()
        dw = c * expand
        # 1. spatial mixing: pointwise, depth-wise 3x3, gate, simplified channel attention, pointwise
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        # 2. channel mixing: pointwise, gate, pointwise
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.gate = SimpleGate()
        # residual scales start at zero, so each block starts as the identity
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.conv2(self.conv1(self.norm1(x_BCHW))))
        y = self.conv3(y * self.sca(y))
        x_BCHW = x_BCHW + self.beta * y
        y = self.conv5(self.gate(self.conv4(self.norm2(x_BCHW))))
        return x_BCHW + self.gamma * y


class NAFNet(nn.Module):
    """Maps a degraded image to its restoration (global residual). Any size; padded to ``config.multiple``.

    Args:
        config: sizes, see :class:`NAFNetConfig` and its presets.
    """

    def __init__(self, config: NAFNetConfig) -> None:
        super().__init__()
        self.config = cfg = config
        c = cfg.width
        self.intro = nn.Conv2d(3, c, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        for n in cfg.encoder_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(cfg.middle_blocks)])
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in cfg.decoder_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
        self.ending = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        H, W = x_B3HW.shape[-2:]
        m = self.config.multiple
        padded = F.pad(x_B3HW, (0, (-W) % m, 0, (-H) % m), mode="reflect" if min(H, W) > m else "replicate")
        feat = self.intro(padded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            feat = encoder(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle(feat)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            feat = decoder(up(feat) + skip)
        return (self.ending(feat) + padded)[..., :H, :W]
