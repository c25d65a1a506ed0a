"""VAR's multi-scale VQ-VAE: encoder, quant_conv, multi-scale residual quantiser, post_quant_conv, decoder.

Paper: Tian et al., "Visual Autoregressive Modeling" (VAR); RestoreVAR (Rajagopalan et al., arXiv 2505.18047)
keeps it unchanged and conditions on the encoder output of the degraded image.
Reference code: FoundationVision/VAR ``models/vqvae.py``. The released ``vae_ch160v4096z32.pth`` loads
into ``VQVAE(TokenizerConfig.vq_f16_256())`` with ``strict=True``.

Shapes: B batch, C latent channels, H/W image side, h/w latent side (H/16), l tokens of one scale,
Lc condition tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from rvar.nn.tokenizer.autoencoder import Decoder, Encoder
from rvar.nn.tokenizer.config import TokenizerConfig
from rvar.nn.tokenizer.quantizer import MultiScaleQuantizer


@dataclass
class TokenizerOutput:
    recon: torch.Tensor  # (B, 3, H, W), unclamped decoder output
    f_hat: torch.Tensor  # (B, C, h, w) straight-through quantised latent
    vq_loss: torch.Tensor
    indices: List[torch.Tensor]
    usage: torch.Tensor  # (S,)
    perplexity: torch.Tensor


CHANNELS_LAST = True  # False: the default memory order everywhere (benchmarks/channels_last.py compares both)


def _channels_last(t_BCHW: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last memory order when nothing is being trained on the CPU (inference, frozen encodes):
    oneDNN's convolutions run faster on it, with the weights as they are. On a 2-core AMD EPYC, 49 tiles of 64 px
    through a demo's tokenizer: decode 1.39x, encode 2.52x faster, outputs within 2e-6
    (``benchmarks/channels_last.py``, BENCHMARKS.md). Training keeps the default order (the published trainer's numerics)."""
    if not CHANNELS_LAST or t_BCHW.device.type != "cpu" or t_BCHW.dim() != 4 or torch.is_grad_enabled():
        return t_BCHW
    return t_BCHW.contiguous(memory_format=torch.channels_last)


class VQVAE(nn.Module):
    """The tokenizer. Images are in [-1, 1].

    Args:
        config: sizes, see :class:`TokenizerConfig` and its presets.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.V, self.Cvae = c.vocab_size, c.z_channels
        # 1. autoencoder
        kw = dict(ch=c.ch, ch_mult=c.ch_mult, num_res_blocks=c.num_res_blocks, dropout=c.dropout,
                  z_channels=c.z_channels, using_sa=c.using_sa, using_mid_sa=c.using_mid_sa)
        self.encoder = Encoder(**kw)
        self.decoder = Decoder(**kw)
        if c.norm_groups != 32:  # the affine parameters are per channel, so only the grouping changes
            for norm in self.modules():
                if isinstance(norm, nn.GroupNorm):
                    if norm.num_channels % c.norm_groups:
                        raise ValueError(f"norm_groups {c.norm_groups} does not divide {norm.num_channels} channels")
                    norm.num_groups = c.norm_groups
        # 2. quantiser and the 3x3 convolutions around it
        self.quantize = MultiScaleQuantizer(c.vocab_size, c.z_channels, c.patch_nums, c.beta,
                                            c.quant_resi, c.share_quant_resi)
        self.quant_conv = nn.Conv2d(c.z_channels, c.z_channels, 3, 1, 1)
        self.post_quant_conv = nn.Conv2d(c.z_channels, c.z_channels, 3, 1, 1)

    @property
    def patch_nums(self):
        return self.quantize.patch_nums

    @property
    def image_size(self) -> int:
        return self.config.image_size

    # ---- training ------------------------------------------------------------------------------------
    def forward(self, img_B3HW: torch.Tensor) -> TokenizerOutput:
        q = self.quantize(self.quant_conv(self.encoder(img_B3HW)))
        recon = self.decoder(self.post_quant_conv(q.f_hat))
        return TokenizerOutput(recon, q.f_hat, q.vq_loss, q.indices, q.usage, q.perplexity)

    # ---- encoding ------------------------------------------------------------------------------------
    def encode_continuous(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """``quant_conv(encoder(x))``: the continuous latent f (B, C, h, w)."""
        return self.quant_conv(self.encoder(_channels_last(img_B3HW))).contiguous()

    def img_to_indices(self, img_B3HW: torch.Tensor) -> List[torch.Tensor]:
        return self.quantize.quantize(self.encode_continuous(img_B3HW))[0]

    def _to_condition_grid(self, feat_BChw: torch.Tensor) -> torch.Tensor:
        side = self.patch_nums[-1]
        if feat_BChw.shape[-2:] != (side, side):
            feat_BChw = F.interpolate(feat_BChw, size=(side, side), mode="bicubic")
        return feat_BChw.flatten(2).transpose(1, 2)  # (B, Lc, C)

    def encode_condition(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """The prior's condition: the encoder output before quant_conv, resized (bicubic) to the last token map,
        (B, Lc, C)."""
        return self._to_condition_grid(self.encoder(_channels_last(img_B3HW)).contiguous())

    def condition_to_continuous(self, cond_BLC: torch.Tensor) -> torch.Tensor:
        """The prior's condition tokens (at the latent's own side) as the continuous latent tokens
        ``quant_conv(encoder(x))`` (B, L, C): no second encoder pass."""
        side = self.patch_nums[-1]
        grid_BChw = cond_BLC.transpose(1, 2).reshape(cond_BLC.shape[0], -1, side, side)
        return self.quant_conv(grid_BChw).flatten(2).transpose(1, 2)

    # ---- decoding ------------------------------------------------------------------------------------
    def decode(self, f_BChw: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        img = self.decoder(self.post_quant_conv(_channels_last(f_BChw))).contiguous()
        return img.clamp(-1, 1) if clamp else img

    @torch.no_grad()
    def reconstruct(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """Tokenizer round trip (encode, quantise at every scale, decode), clamped to [-1, 1]."""
        return self.decode(self.quantize.quantize(self.encode_continuous(img_B3HW))[1][-1])
