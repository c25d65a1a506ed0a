"""Multi-scale residual vector quantiser with partially shared phi convolutions.

Paper: Tian et al., "Visual Autoregressive Modeling" (VAR), section 3.2 / Algorithm 1-2.
Reference code: FoundationVision/VAR ``models/quant.py`` (``VectorQuantizer2``).

One codebook serves every scale. At scale k the residual ``f_rest`` is area-downsampled to the k-th token
map, quantised by nearest codeword, upsampled back (bicubic), passed through phi and added to ``f_hat``.

Shapes: B batch, C latent channels (Cvae), h/w latent side, pn token-map side at one scale,
l = pn*pn tokens of one scale, L tokens of all scales, V vocabulary size, S number of scales.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) * h + r * conv3x3(h): the residual refinement after upsampling a token map."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw * (1 - self.ratio) + super().forward(h_BChw) * self.ratio


class PhiBank(nn.Module):
    """K phi layers shared across S scales: scale k uses the layer whose tick is nearest to k/(S-1).

    Key layout matches the reference for every sharing mode: ``qresi`` (one shared), ``qresi_ls.i``
    (partially shared) or ``i`` (one per scale).
    """

    def __init__(self, channels: int, ratio: float, share: int, num_scales: int) -> None:
        super().__init__()
        make = (lambda: Phi(channels, ratio)) if abs(ratio) > 1e-6 else nn.Identity
        self.mode = "shared" if share == 1 else ("partial" if share > 1 else "per_scale")
        if self.mode == "shared":
            self.qresi = make()
        elif self.mode == "partial":
            self.qresi_ls = nn.ModuleList([make() for _ in range(share)])
        else:
            for i in range(num_scales):
                self.add_module(str(i), make())
        count = share if share > 0 else num_scales  # phi layers: 1 shared, ``share`` partial, one per scale
        # tick placement of the reference: thirds for K=4, halves otherwise
        self.ticks = (np.linspace(1 / 3 / count, 1 - 1 / 3 / count, count) if count == 4
                      else np.linspace(1 / 2 / count, 1 - 1 / 2 / count, count))

    def layer(self, scale_index: int, num_scales: int) -> nn.Module:
        if self.mode == "shared":
            return self.qresi
        at = scale_index / (num_scales - 1) if num_scales > 1 else 0.0
        nearest = int(np.argmin(np.abs(self.ticks - at)))
        return self.qresi_ls[nearest] if self.mode == "partial" else getattr(self, str(nearest))


@dataclass
class QuantizerOutput:
    """Result of the training-time quantisation (straight-through)."""

    f_hat: torch.Tensor  # (B, C, h, w), gradients flow to the encoder through the straight-through estimator
    vq_loss: torch.Tensor  # codebook + beta * commitment, averaged over scales
    indices: List[torch.Tensor]  # per scale (B, l)
    usage: torch.Tensor  # (S,) fraction of the codebook hit in this batch, per scale
    perplexity: torch.Tensor  # scalar, codebook perplexity over all scales of this batch


class MultiScaleQuantizer(nn.Module):
    """VAR's residual quantiser over ``patch_nums`` scales."""

    def __init__(self, vocab_size: int, z_channels: int, patch_nums: Sequence[int], beta: float = 0.25,
                 quant_resi: float = 0.5, share_quant_resi: int = 4) -> None:
        super().__init__()
        self.vocab_size, self.Cvae = vocab_size, z_channels
        self.patch_nums: Tuple[int, ...] = tuple(patch_nums)
        self.beta = beta
        self.quant_resi = PhiBank(z_channels, quant_resi, share_quant_resi, len(self.patch_nums))
        self.embedding = nn.Embedding(vocab_size, z_channels)
        # EMA of codebook hits per scale; resized on load when patch_nums differ (see load_state_dict hook)
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), vocab_size))
        self._register_load_state_dict_pre_hook(self._resize_usage_buffer)

    def _resize_usage_buffer(self, state_dict, prefix, *args) -> None:
        key = prefix + "ema_vocab_hit_SV"
        if key in state_dict and state_dict[key].shape != self.ema_vocab_hit_SV.shape:
            state_dict[key] = self.ema_vocab_hit_SV.detach().clone()

    # ---- helpers -------------------------------------------------------------------------------------
    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    def phi(self, si: int, h_BChw: torch.Tensor) -> torch.Tensor:
        return self.quant_resi.layer(si, self.num_scales)(h_BChw)

    def nearest_code(self, z_NC: torch.Tensor) -> torch.Tensor:
        codebook_VC = self.embedding.weight.detach()
        # ||z||^2 + ||e||^2 - 2 z.e, in the reference's order so near-ties break the same way
        dist_NV = torch.sum(z_NC.square(), dim=1, keepdim=True) + torch.sum(codebook_VC.square(), dim=1)
        dist_NV = torch.addmm(dist_NV, z_NC, codebook_VC.T, beta=1, alpha=-2)
        return dist_NV.argmin(dim=1)

    def lookup(self, idx_Bl: torch.Tensor, pn: int) -> torch.Tensor:
        """Indices (B, l) -> codewords as a map (B, C, pn, pn)."""
        return self.embedding(idx_Bl).transpose(1, 2).reshape(idx_Bl.shape[0], self.Cvae, pn, pn)

    def _upsample(self, si: int, h_BCpp: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        if si != self.num_scales - 1:
            h_BCpp = F.interpolate(h_BCpp, size=size, mode="bicubic")
        return self.phi(si, h_BCpp)

    # ---- residual quantisation, shared by inference and training -------------------------------------
    def residual_scales(self, f_BChw: torch.Tensor) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield (indices (B, l), accumulated f_hat (B, C, h, w)) after each scale, small to large.

        The nearest-code search runs on the detached residual; f_hat keeps gradients to the codebook and phi.
        """
        B, C, H, W = f_BChw.shape
        if self.patch_nums[-1] != H or self.patch_nums[-1] != W:
            raise ValueError(f"latent is {H}x{W} but the last scale is {self.patch_nums[-1]}")
        f_rest = f_BChw.detach().clone()
        f_hat = torch.zeros_like(f_rest)
        for si, pn in enumerate(self.patch_nums):
            z_BCpp = f_rest if si == self.num_scales - 1 else F.interpolate(f_rest, size=(pn, pn), mode="area")
            idx_Bl = self.nearest_code(z_BCpp.permute(0, 2, 3, 1).reshape(-1, C)).view(B, pn * pn)
            h_BChw = self._upsample(si, self.lookup(idx_Bl, pn), (H, W))
            f_hat = f_hat + h_BChw
            f_rest = f_rest - h_BChw.detach()
            yield idx_Bl, f_hat

    @torch.no_grad()
    def quantize(self, f_BChw: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Continuous latent -> (indices per scale (B, l), accumulated f_hat after each scale (B, C, h, w))."""
        indices, f_hats = zip(*self.residual_scales(f_BChw))
        return list(indices), list(f_hats)

    def indices_to_fhat(self, idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:
        """Indices of every scale -> the final quantised latent (B, C, h, w)."""
        B, H = idx_Bl[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.Cvae, H, H, device=idx_Bl[0].device, dtype=self.embedding.weight.dtype)
        for si, pn in enumerate(self.patch_nums):
            f_hat = f_hat + self._upsample(si, self.lookup(idx_Bl[si], pn), (H, H))
        return f_hat

    def teacher_forcing_input(self, idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:
        """Indices -> the prior's input for scales 2..S: the running f_hat area-downsampled, (B, L - 1, C)."""
        B, H = idx_Bl[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.Cvae, H, H, device=idx_Bl[0].device, dtype=self.embedding.weight.dtype)
        next_scales = []
        for si in range(self.num_scales - 1):
            f_hat = f_hat + self._upsample(si, self.lookup(idx_Bl[si], self.patch_nums[si]), (H, H))
            pn_next = self.patch_nums[si + 1]
            next_scales.append(F.interpolate(f_hat, size=(pn_next, pn_next), mode="area").flatten(2).transpose(1, 2))
        return torch.cat(next_scales, dim=1)

    def next_autoregressive_input(self, si: int, f_hat_BChw: torch.Tensor,
                                  h_BCpp: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Add scale ``si``'s codewords to f_hat; return (f_hat, next scale's input map (B, C, pn', pn'))."""
        H = self.patch_nums[-1]
        f_hat_BChw = f_hat_BChw + self._upsample(si, h_BCpp, (H, H))
        if si == self.num_scales - 1:
            return f_hat_BChw, f_hat_BChw
        pn_next = self.patch_nums[si + 1]
        return f_hat_BChw, F.interpolate(f_hat_BChw, size=(pn_next, pn_next), mode="area")

    # ---- codebook restarts ---------------------------------------------------------------------------
    def dead_codes(self, everything: bool = False) -> torch.Tensor:
        """Mask (V,) of the codes whose hit EMA is under 3% of the mean; all of them with ``everything``."""
        hits_V = self.ema_vocab_hit_SV.sum(0)
        return torch.ones_like(hits_V, dtype=torch.bool) if everything else hits_V < 0.03 * hits_V.mean()

    @torch.no_grad()
    def residual_rows(self, f_BChw: torch.Tensor) -> torch.Tensor:
        """What the code search looks up at every scale (the area-pooled residuals of ``f_BChw``), rows (N, C)."""
        _, f_hats = self.quantize(f_BChw)
        previous = [torch.zeros_like(f_BChw)] + f_hats[:-1]  # f_hat before each scale
        return torch.cat([F.adaptive_avg_pool2d(f_BChw - f_hat, pn).permute(0, 2, 3, 1).reshape(-1, self.Cvae)
                          for f_hat, pn in zip(previous, self.patch_nums)])

    @torch.no_grad()
    def restart_codes(self, dead_V: torch.Tensor, rows_NC: torch.Tensor, generator: torch.Generator,
                      share: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        """Re-draw the ``dead_V`` codes from random ``rows_NC`` (+1% std noise; CPU ``generator``), ``share``d
        (e.g. rank 0's broadcast) before they are written, and zero their hit counts."""
        count = int(dead_V.sum())
        pick = torch.randint(rows_NC.shape[0], (count,), generator=generator)
        noise = torch.randn(count, rows_NC.shape[1], generator=generator).to(rows_NC.device)
        fresh = rows_NC[pick.to(rows_NC.device)] + 0.01 * rows_NC.std() * noise
        fresh = share(fresh) if share is not None else fresh
        self.embedding.weight.data[dead_V] = fresh.to(self.embedding.weight.dtype)
        self.ema_vocab_hit_SV[:, dead_V] = 0.0

    # ---- training-time quantisation ------------------------------------------------------------------
    def forward(self, f_BChw: torch.Tensor) -> QuantizerOutput:
        """Quantise with losses and a straight-through estimator; updates the hit EMA when training."""
        f_BChw = f_BChw.float()
        f_no_grad = f_BChw.detach()
        vq_loss = f_BChw.new_zeros(())
        indices, hits = [], []
        for idx_Bl, f_hat in self.residual_scales(f_BChw):
            # codebook term pulls codes to the encoder output, commitment term (beta) pulls the encoder
            vq_loss = vq_loss + F.mse_loss(f_hat, f_no_grad) + self.beta * F.mse_loss(f_hat.detach(), f_BChw)
            indices.append(idx_Bl)
            hits.append(torch.bincount(idx_Bl.flatten(), minlength=self.vocab_size).float())
        hit_SV = torch.stack(hits)
        if self.training:
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(hit_SV)
            with torch.no_grad():
                fresh = self.ema_vocab_hit_SV.sum() == 0
                self.ema_vocab_hit_SV.copy_(hit_SV if fresh else self.ema_vocab_hit_SV * 0.99 + hit_SV * 0.01)
        probs_V = hit_SV.sum(0) / hit_SV.sum().clamp_min(1)
        perplexity = torch.exp(-(probs_V * torch.log(probs_V.clamp_min(1e-10))).sum())
        f_hat_st = f_hat.detach() - f_no_grad + f_BChw  # straight-through: value of f_hat, gradient of f
        return QuantizerOutput(f_hat_st, vq_loss / self.num_scales, indices, (hit_SV > 0).float().mean(1), perplexity)
