"""A learned fidelity path: how much of the input passes to a latent restorer's output, per pixel.

A latent restorer renders every image through its tokenizer's decoder, so what the latent cannot carry (fine texture,
the exact pixels of a clean or barely degraded photo) is lost even where nothing needed restoring. With ``x`` the
input, ``T`` its tokenizer round trip (``decode(encode(x))``, continuous) and ``R`` the restorer's output, the gate
returns::

    R + a * (x - T) + b * (T - R)        a, b in [0, 1] per pixel

``a`` passes the input's detail the latent loses; ``b`` takes back the restorer's change. ``a = b = 1`` gives the
input itself, ``a = b = 0`` the published output, ``a = 0.5, b = 0`` rvar's fixed ``--fidelity 0.5``. Both gates
are a 1x1 convolution (and optionally one hidden layer) of local statistics: ``|R - T|`` and ``|x - T|`` at two window
sizes, the input's local detail (``|Laplacian|``) and its brightness; with ``image_stats`` also of the same maps'
means over the whole image, the input's contrast and five degradation descriptors (dark channel, brightness,
saturation, JPEG blockiness, noise level: :func:`degradation_descriptors`), so one decision can hold for a whole
photo (a clean or JPEG photo: keep the input everywhere; a hazy one: trust the restorer everywhere). A few dozen to a
few hundred weights, so a stage of a few hundred steps fits them (:class:`rvar.lit.fidelity.FidelityModule`). It
starts as the fixed ``a = 0.5, b = 0``.

With ``standardise`` the statistics are shifted and scaled per feature (``feature_mean``, ``feature_std``: buffers
the stage sets once from its first images, :meth:`FidelityGate.set_standardisation`, and files carry) before the
gates read them. The raw statistics differ in scale by orders of magnitude (log-means near -3, a descriptor near
0.01), and a few hundred updates of a linear gate on them do not converge: on 18 validation photos, gates fitted on
96 images as the demo's stage sees them scored +0.96 to +2.00 dB and gave up haze and snow; standardised, +2.25 to
+2.68 with haze kept (BENCHMARKS.md).

With ``image_stats`` the gate must see whole images, not tiles: :func:`rvar.inference.restorer_fn` restores the
tiles without it and applies it once to the blended image (``finish``).

Shapes: B batch, H/W image side; images in [-1, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURES = 6  # log-means of |R - T| and |x - T| in both windows, of the input's |Laplacian|; its brightness
IMAGE_FEATURES = 9  # with image_stats: log-means of |R - T|, |x - T| and |Laplacian| over the image, its contrast,
#                    and the five degradation descriptors of :func:`degradation_descriptors`


def degradation_descriptors(x_B3HW: torch.Tensor) -> torch.Tensor:
    """(B, 5): cheap whole-image statistics that tell the common degradations apart, so a whole-image gate can
    trust the restorer on a hazy or dark photo and keep a clean, JPEG or slightly blurred one:

    - mean dark channel (per-pixel minimum over RGB and a 15 px window; haze and snow raise it),
    - mean brightness (low light lowers it),
    - mean saturation (max - min over RGB; haze washes it out),
    - blockiness (log ratio of the steps across 8 px block edges to the others; JPEG raises it),
    - noise level (log median |Laplacian|; sensor noise raises it, blur lowers it).
    """
    u = (x_B3HW.float() + 1) / 2
    dark = -F.max_pool2d(-u.amin(1, keepdim=True), 15, 1, 7)
    saturation = u.amax(1) - u.amin(1)
    grey = u.mean(1, keepdim=True)
    steps = []
    for dim in (-1, -2):  # across columns, then across rows
        n = grey.shape[dim] - 1
        diff = (grey.narrow(dim, 1, n) - grey.narrow(dim, 0, n)).abs().movedim(dim, -1)  # the steps on the last axis
        edge = torch.arange(n, device=u.device) % 8 == 7
        if not edge.any() or edge.all():  # too small to have block edges
            steps.append(torch.zeros(u.shape[0], device=u.device))
        else:
            on, off = diff[..., edge].mean((1, 2, 3)), diff[..., ~edge].mean((1, 2, 3))
            steps.append(torch.log((on + 1e-3) / (off + 1e-3)))
    laplacian = grey[..., :-2, 1:-1] + grey[..., 2:, 1:-1] + grey[..., 1:-1, :-2] + grey[..., 1:-1, 2:] \
        - 4 * grey[..., 1:-1, 1:-1]
    noise = torch.log(laplacian.abs().flatten(1).median(1).values + 1e-3) if laplacian.numel() else \
        torch.zeros(u.shape[0], device=u.device)
    return torch.stack([dark.mean((1, 2, 3)), grey.mean((1, 2, 3)), saturation.mean((1, 2)),
                        (steps[0] + steps[1]) / 2, noise], dim=1)


@dataclass
class FidelityConfig:
    """Sizes of :class:`FidelityGate`.

    Args:
        hidden: 0: the gates are a linear function of the statistics; > 0: one hidden 1x1 layer of this width.
        small_window / large_window: sides (odd) of the box windows the statistics are averaged over, in pixels.
        image_stats: the gates also see whole-image statistics (False: local ones only, as files from before).
        standardise: the statistics are standardised per feature before the gates (False: raw, as files from
            before); the mean and spread are buffers set from the fitting stage's first images.
    """

    hidden: int = 0
    small_window: int = 3
    large_window: int = 15
    image_stats: bool = False
    standardise: bool = False

    @property
    def features(self) -> int:
        return FEATURES + (IMAGE_FEATURES if self.image_stats else 0)

    def __post_init__(self) -> None:
        for name in ("small_window", "large_window"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"FidelityConfig.{name} must be odd and positive, got {getattr(self, name)}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _box(t_B1HW: torch.Tensor, side: int) -> torch.Tensor:
    """Mean over a ``side`` x ``side`` window at every pixel (edges replicated)."""
    if side == 1:
        return t_B1HW
    r = side // 2
    return F.avg_pool2d(F.pad(t_B1HW, (r, r, r, r), mode="replicate"), side, stride=1)


class FidelityGate(nn.Module):
    """The per-pixel gates ``a`` and ``b`` of the module docstring, and their output."""

    def __init__(self, config: FidelityConfig) -> None:
        super().__init__()
        self.config = config
        n = config.features
        layers = ([nn.Conv2d(n, config.hidden, 1), nn.GELU(), nn.Conv2d(config.hidden, 2, 1)]
                  if config.hidden > 0 else [nn.Conv2d(n, 2, 1)])
        self.net = nn.Sequential(*layers)
        laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
        self.register_buffer("laplacian", laplacian, persistent=False)
        nn.init.zeros_(self.net[-1].weight)
        with torch.no_grad():  # the start: a = 0.5 (sigmoid 0), b = sigmoid(-4) = 0.018
            self.net[-1].bias.copy_(torch.tensor([0.0, -4.0]))
        if config.standardise:  # identity until set_standardisation; saved with the gate
            self.register_buffer("feature_mean", torch.zeros(1, n, 1, 1))
            self.register_buffer("feature_std", torch.ones(1, n, 1, 1))

    @torch.no_grad()
    def set_standardisation(self, statistics_BFHW: torch.Tensor) -> None:
        """Set the per-feature mean and spread from :meth:`statistics` of some images (the fitting stage's first
        ones). A spread under 1e-3 (a feature constant on those images) counts as 1e-3."""
        if not self.config.standardise:
            raise ValueError("this gate does not standardise its statistics (FidelityConfig.standardise is False)")
        flat = statistics_BFHW.float().transpose(0, 1).flatten(1)  # (F, B*H*W)
        self.feature_mean.copy_(flat.mean(1).view_as(self.feature_mean))
        self.feature_std.copy_(flat.std(1).clamp_min(1e-3).view_as(self.feature_std))

    def statistics(self, x_B3HW: torch.Tensor, restored_B3HW: torch.Tensor, round_trip_B3HW: torch.Tensor
                   ) -> torch.Tensor:
        """(B, config.features, H, W): what the gates see."""
        change = (restored_B3HW - round_trip_B3HW).abs().mean(1, keepdim=True)
        lost = (x_B3HW - round_trip_B3HW).abs().mean(1, keepdim=True)
        grey = x_B3HW.mean(1, keepdim=True)
        detail = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), self.laplacian).abs()
        small, large = self.config.small_window, self.config.large_window
        feats = [_box(change, small), _box(change, large), _box(lost, small), _box(lost, large), _box(detail, small)]
        out = [torch.log(f + 1e-3) for f in feats] + [grey]  # the FEATURES local ones
        if self.config.image_stats:  # then the IMAGE_FEATURES whole-image ones, one value per image
            out += [torch.log(m.mean(dim=(2, 3), keepdim=True) + 1e-3).expand_as(m) for m in (change, lost, detail)]
            out.append(x_B3HW.std(dim=(2, 3), keepdim=True).mean(1, keepdim=True).expand_as(grey))
            out += [d.view(-1, 1, 1, 1).expand_as(grey) for d in degradation_descriptors(x_B3HW).unbind(1)]
        return torch.cat(out, dim=1)

    def gates(self, x_B3HW: torch.Tensor, restored_B3HW: torch.Tensor, round_trip_B3HW: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(a, b), each (B, 1, H, W) in [0, 1]."""
        return self.gates_from(self.statistics(x_B3HW, restored_B3HW, round_trip_B3HW))

    def gates_from(self, statistics_BFHW: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(a, b) from :meth:`statistics` computed earlier (they do not depend on the gate's weights, so a stage
        computes them once per image and makes many updates on them)."""
        stats = statistics_BFHW.float()
        if self.config.standardise:
            stats = (stats - self.feature_mean) / self.feature_std
        ab = torch.sigmoid(self.net(stats))
        return ab[:, :1], ab[:, 1:]

    def forward(self, x_B3HW: torch.Tensor, restored_B3HW: torch.Tensor, round_trip_B3HW: torch.Tensor,
                weight: float = 1.0) -> torch.Tensor:
        """The gated output, ``weight`` x the gates' correction added to ``restored`` (0: ``restored`` itself)."""
        a, b = self.gates(x_B3HW, restored_B3HW, round_trip_B3HW)
        correction = a * (x_B3HW - round_trip_B3HW) + b * (round_trip_B3HW - restored_B3HW)
        return restored_B3HW + weight * correction


__all__ = ["FidelityConfig", "FidelityGate", "FEATURES", "IMAGE_FEATURES", "degradation_descriptors"]
