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

With ``colour`` the switch also passes the input's *colour* where the restorer's is wrong: the gated output keeps
its brightness and takes, by a fitted share per label, the input's colour brought up to that brightness by one tone
curve (:func:`input_colour`). The tiny latent restorer turns greens brown and a red motorcycle pink under low light,
and its colours of noisy photos are worse than the input's own, smoothed.

With ``image_stats`` the gate must see whole images, not tiles: :func:`rvar.inference.restorer_fn` restores the
tiles without it and applies it once to the blended image (``finish``).

Shapes: B batch, H/W image side; images in [-1, 1].
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURES = 6  # log-means of |R - T| and |x - T| in both windows, of the input's |Laplacian|; its brightness
SWITCH_HIDDEN = 16  # the switch classifier's hidden width
IMAGE_FEATURES = 9  # with image_stats: log-means of |R - T|, |x - T| and |Laplacian| over the image, its contrast,
#                    and the five degradation descriptors of :func:`degradation_descriptors`
SWITCH_FEATURES = 8  # switch_inputs "input": the input's own whole-image statistics (:func:`switch_features`)
SWITCH_INPUTS = ("image", "input")


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
    dark = _min_filter(u.amin(1, keepdim=True), 15)
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
    laplacian = _detail(grey)[..., 1:-1, 1:-1]  # |Laplacian| of the interior pixels (no replicated edges)
    noise = torch.log(laplacian.flatten(1).median(1).values + 1e-3) if laplacian.numel() else \
        torch.zeros(u.shape[0], device=u.device)
    return torch.stack([dark.mean((1, 2, 3)), grey.mean((1, 2, 3)), saturation.mean((1, 2)),
                        (steps[0] + steps[1]) / 2, noise], dim=1)


def _min_filter(t_B1HW: torch.Tensor, side: int) -> torch.Tensor:
    """Minimum over a ``side`` x ``side`` window at every pixel (outside the image ignored): the same values as one
    square min-pool, a row pass then a column pass, each by doubling (the minimum of two windows of 1, 2, 4, ...
    pixels, then of two overlapping ones); much faster on CPU (``benchmarks/switch_features_cost.py``)."""
    out = t_B1HW
    for dim in (-1, -2):
        padded = F.pad(out.movedim(dim, -1), (side // 2, side // 2), value=float("inf"))
        width, m = 1, padded
        while width * 2 <= side:  # m[j]: the minimum of padded[j : j + 2 width]
            m = torch.minimum(m[..., :-width], m[..., width:])
            width *= 2
        n = padded.shape[-1] - side + 1
        out = torch.minimum(m[..., :n], m[..., side - width:side - width + n]).movedim(-1, dim)
    return out


def _detail(grey_B1HW: torch.Tensor) -> torch.Tensor:
    """|Laplacian| of a grey image at every pixel (edges replicated): the gate's local detail statistic. Shifted
    slices, not a one-channel convolution (faster on CPU: ``benchmarks/switch_features_cost.py``)."""
    p = F.pad(grey_B1HW, (1, 1, 1, 1), mode="replicate")
    centre = p[..., 1:-1, 1:-1]
    return (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * centre).abs()


def switch_features(x_B3HW: torch.Tensor, highlights: bool = False) -> torch.Tensor:
    """(B, SWITCH_FEATURES): what a switch with ``switch_inputs: input`` reads, from the input alone: the log-mean of
    its |Laplacian|, its contrast, :func:`degradation_descriptors`, and the log ratio of its vertical to horizontal
    steps (rain streaks fall, so they add horizontal steps; snow flakes add both). With ``highlights`` (B,
    SWITCH_FEATURES + 1): also its highlight level, :func:`highlight_level` (a photo darkened by low light has no
    bright pixels left; a dark photo usually keeps a few, so a dark blurred photo is not taken for low light)."""
    x = x_B3HW.float()
    grey = x.mean(1, keepdim=True)
    across = (grey[..., :, 1:] - grey[..., :, :-1]).abs().mean((1, 2, 3))
    down = (grey[..., 1:, :] - grey[..., :-1, :]).abs().mean((1, 2, 3))
    return torch.cat([torch.log(_detail(grey).mean((2, 3)) + 1e-3), x.std(dim=(2, 3)).mean(1, keepdim=True),
                      degradation_descriptors(x), torch.log((down + 1e-3) / (across + 1e-3))[:, None]]
                    + ([highlight_level(x)[:, None]] if highlights else []), dim=1)


def highlight_level(x_B3HW: torch.Tensor, q: float = 0.99, most: int = 65536) -> torch.Tensor:
    """(B,): the ``q`` quantile of each image's brightness (the mean over RGB, in [0, 1]), from at most ``most``
    evenly spaced pixels."""
    u = ((x_B3HW.float().mean(1) + 1) / 2).flatten(1)
    u = u[:, ::max(1, u.shape[1] // most)]
    return u.kthvalue(min(u.shape[1], int(q * (u.shape[1] - 1)) + 1), dim=1).values


@dataclass
class FidelityConfig:
    """Sizes of :class:`FidelityGate`.

    Args:
        hidden: 0: the gates are a linear function of the statistics; > 0: one hidden 1x1 layer of this width.
        small_window / large_window: sides (odd) of the box windows the statistics are averaged over, in pixels.
        image_stats: the gates also see whole-image statistics (False: local ones only, as files from before).
        standardise: the statistics are standardised per feature before the gates (False: raw, as files from
            before); the mean and spread are buffers set from the fitting stage's first images.
        switch_classes: degradation labels of an image-level switch (None: none, as files from before). A small
            classifier reads the standardised whole-image statistics and gives each image a probability per label;
            each label has a learned trust in the restorer, ``t`` in [0, 1]; the image's trust ``s`` is their
            expectation and scales both gates by ``1 - s`` (``s = 1``: the restorer's output as it is). The fitting
            stage fits both at its end, on its buffer, with the gates fixed:
            the classifier on the images' labels, the trusts on their PSNR (:func:`fit_switch`). Needs
            ``image_stats`` and ``standardise``. Until fitted the switch is off.
        switch_inputs: what the switch's classifier reads. ``image``: the gate's standardised whole-image statistics
            (two of them depend on the restorer, so its fitting stage can only learn from the images it restored).
            ``input``: :func:`switch_features` of the input alone, standardised by buffers of their own, so the
            fitting stage can teach it on many more degraded images than it restores (on one demo's validation
            photos, 8 input features reached 94 % accuracy from 1600 images and 87 % from 100; BENCHMARKS.md).
        switch_keep: the switch also has a learned trust in the *input* per label, ``k`` in [0, 1]; the image's
            ``kappa`` (their expectation) moves the output that far back to the input (``kappa = 1``: the input
            itself). The trust in the restorer can only undo the gates' correction; this undoes the restorer's
            change too, for photos the classifier calls clean or JPEG (real camera noise on a dark photo, which
            the gates brighten as if it were low light). Fitted with the trusts. False: as files from before.
        colour: the switch also has a learned share per label, ``w`` in [0, 1], of the *input's colour* in the
            output: the gated output keeps its brightness (the mean over RGB) and its colour (the rest) moves that
            share towards the input's, brought up to the output's brightness by one tone curve for R, G and B and
            smoothed (:func:`input_colour`). The latent restorer returns some colours wrong (greens brown, a red
            motorcycle pink, under low light) and noisy inputs' colours, smoothed, are truer than its own. Fitted
            after the trusts, on the gated outputs, as they are. Needs ``switch_classes``. False: as files from
            before.
        switch_highlights: a switch with ``switch_inputs: input`` also reads the input's highlight level
            (:func:`highlight_level`). On one demo's 126 validation images, a classifier taught on 400 / 1600
            training-mix images: 93 / 94 % right against 92 / 91 %, and no blurred photo taken for low light
            (``benchmarks/gate_study/switch_accuracy.py``). False: as files from before.
        chroma: the gates are four, not two: ``a`` and ``b`` for the brightness (the mean over RGB) of each
            difference and for its colour (the rest), so a gate can keep the input's brightness and take the
            restorer's colour (noise and JPEG damage colour the latent restores well). False: as files from before.
    """

    hidden: int = 0
    small_window: int = 3
    large_window: int = 15
    image_stats: bool = False
    standardise: bool = False
    switch_classes: Optional[List[str]] = None
    switch_inputs: str = "image"
    switch_keep: bool = False
    chroma: bool = False
    colour: bool = False
    switch_highlights: bool = False

    @property
    def features(self) -> int:
        return FEATURES + (IMAGE_FEATURES if self.image_stats else 0)

    def __post_init__(self) -> None:
        for name in ("small_window", "large_window"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"FidelityConfig.{name} must be odd and positive, got {getattr(self, name)}")
        if self.switch_classes is not None:
            self.switch_classes = [str(c) for c in self.switch_classes]
            if len(self.switch_classes) < 2 or len(set(self.switch_classes)) != len(self.switch_classes):
                raise ValueError(f"FidelityConfig.switch_classes needs two or more distinct labels, got "
                                 f"{self.switch_classes}")
            if not (self.image_stats and self.standardise):
                raise ValueError("FidelityConfig.switch_classes needs image_stats and standardise")
        if self.switch_highlights and self.switch_inputs != "input":
            raise ValueError("FidelityConfig.switch_highlights needs switch_inputs: input")
        if self.switch_classes is None and (self.switch_keep or self.colour):
            raise ValueError(f"FidelityConfig.{'switch_keep' if self.switch_keep else 'colour'} needs switch_classes")
        if self.switch_inputs not in SWITCH_INPUTS:
            raise ValueError(f"FidelityConfig.switch_inputs must be one of {', '.join(SWITCH_INPUTS)}, got "
                             f"{self.switch_inputs!r}")

    def to_dict(self) -> Dict[str, Any]:
        """The fields; ``switch_classes`` only when set and ``switch_inputs`` only when not ``image``, so a gate
        without a switch, or with the first kind, is described as before."""
        fields = asdict(self)
        if fields["switch_classes"] is None:
            del fields["switch_classes"]
        if fields["switch_inputs"] == "image":
            del fields["switch_inputs"]
        for name in ("switch_keep", "chroma", "colour", "switch_highlights"):
            if not fields[name]:
                del fields[name]
        return fields


def _box(t_B1HW: torch.Tensor, side: int) -> torch.Tensor:
    """Mean over a ``side`` x ``side`` window at every pixel (edges replicated), of each channel."""
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
        outputs = 4 if config.chroma else 2  # (a, b), or (a, b) for the brightness then (a, b) for the colour
        layers = ([nn.Conv2d(n, config.hidden, 1), nn.GELU(), nn.Conv2d(config.hidden, outputs, 1)]
                  if config.hidden > 0 else [nn.Conv2d(n, outputs, 1)])
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)
        with torch.no_grad():  # the start: a = 0.5 (sigmoid 0), b = sigmoid(-4) = 0.018
            self.net[-1].bias.copy_(torch.tensor([0.0, -4.0] * (outputs // 2)))
        if config.standardise:  # identity until set_standardisation; saved with the gate
            self.register_buffer("feature_mean", torch.zeros(1, n, 1, 1))
            self.register_buffer("feature_std", torch.ones(1, n, 1, 1))
        if config.switch_classes is not None:  # the image-level switch: off until fitted (switch_fitted 1)
            reads = (SWITCH_FEATURES + int(config.switch_highlights) if config.switch_inputs == "input"
                     else IMAGE_FEATURES)
            if config.switch_inputs == "input":  # its own standardisation, set when it is fitted
                self.register_buffer("switch_mean", torch.zeros(reads))
                self.register_buffer("switch_std", torch.ones(reads))
            self.switch_classifier = nn.Sequential(nn.Linear(reads, SWITCH_HIDDEN), nn.Tanh(),
                                                   nn.Linear(SWITCH_HIDDEN, len(config.switch_classes)))
            self.switch_trust = nn.Parameter(torch.zeros(len(config.switch_classes)))  # logits of t per label
            if config.switch_keep:  # logits of k per label, the trust in the input
                self.switch_keep = nn.Parameter(torch.full((len(config.switch_classes),), -2.0))
            self.register_buffer("switch_fitted", torch.zeros(()))
            if config.colour:  # logits of w per label, the share of the input's colour; off until fitted
                self.switch_colour = nn.Parameter(torch.zeros(len(config.switch_classes)))
                self.register_buffer("colour_fitted", torch.zeros(()))

    @property
    def has_switch(self) -> bool:
        return self.config.switch_classes is not None and bool(self.switch_fitted)

    @property
    def has_colour(self) -> bool:
        return self.config.colour and self.has_switch and bool(self.colour_fitted)

    def colour_share(self, statistics_BFHW: torch.Tensor, x_B3HW: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B,): each image's share of the input's colour, ``w``: the labels' shares weighted by the classifier."""
        return self.switch_probabilities(statistics_BFHW, x_B3HW) @ torch.sigmoid(self.switch_colour)

    def image_features(self, statistics_BFHW: torch.Tensor) -> torch.Tensor:
        """(B, IMAGE_FEATURES): the standardised whole-image statistics (constant over each image)."""
        stats = statistics_BFHW[:, FEATURES:, :1, :1].float()
        stats = (stats - self.feature_mean[:, FEATURES:]) / self.feature_std[:, FEATURES:]
        return stats.flatten(1)

    def switch_inputs(self, statistics_BFHW: torch.Tensor, x_B3HW: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, features): what the switch's classifier reads (``FidelityConfig.switch_inputs``), standardised."""
        if self.config.switch_inputs == "image":
            return self.image_features(statistics_BFHW)
        if x_B3HW is None:
            raise ValueError("this gate's switch reads the input image (switch_inputs: input): pass x")
        return (switch_features(x_B3HW, self.config.switch_highlights) - self.switch_mean) / self.switch_std

    def switch(self, statistics_BFHW: torch.Tensor, x_B3HW: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B,): each image's trust in the restorer, ``s``: the labels' trusts weighted by the classifier."""
        return self.trusts(statistics_BFHW, x_B3HW)[0]

    def switch_probabilities(self, statistics_BFHW: torch.Tensor, x_B3HW: Optional[torch.Tensor] = None
                             ) -> torch.Tensor:
        """(B, labels): the switch classifier's probability of each label per image."""
        return torch.softmax(self.switch_classifier(self.switch_inputs(statistics_BFHW, x_B3HW)), dim=1)

    def trusts(self, statistics_BFHW: torch.Tensor, x_B3HW: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(s, kappa), each (B,): the image's trust in the restorer and, with ``switch_keep``, in the input (0
        without)."""
        probabilities = self.switch_probabilities(statistics_BFHW, x_B3HW)
        s = probabilities @ torch.sigmoid(self.switch_trust)
        kappa = probabilities @ torch.sigmoid(self.switch_keep) if self.config.switch_keep else torch.zeros_like(s)
        return s, kappa

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
        detail = _detail(grey)
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
        """(a, b), each (B, 1, H, W) in [0, 1] ((B, 2, H, W) with ``chroma``: brightness, colour; :func:`blend`)."""
        return self.gates_from(self.statistics(x_B3HW, restored_B3HW, round_trip_B3HW), x_B3HW)

    def gates_from(self, statistics_BFHW: torch.Tensor, x_B3HW: Optional[torch.Tensor] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(a, b) from :meth:`statistics` computed earlier (they do not depend on the gate's weights, so a stage
        computes them once per image and makes many updates on them). ``x_B3HW``: the input, which a fitted switch
        with ``switch_inputs: input`` reads."""
        stats = statistics_BFHW.float()
        if self.config.standardise:
            stats = (stats - self.feature_mean) / self.feature_std
        ab = torch.sigmoid(self.net(stats))
        if self.has_switch:  # the output R + (1 - kappa) (1 - s) c + kappa (x - R): both gates move alike
            s, kappa = (t.view(-1, 1, 1, 1) for t in self.trusts(statistics_BFHW, x_B3HW))
            ab = ab * (1 - s) * (1 - kappa) + kappa
        return ab[:, 0::2], ab[:, 1::2]

    def forward(self, x_B3HW: torch.Tensor, restored_B3HW: torch.Tensor, round_trip_B3HW: torch.Tensor,
                weight: float = 1.0) -> torch.Tensor:
        """The gated output, ``weight`` x the gates' correction added to ``restored`` (0: ``restored`` itself)."""
        statistics = self.statistics(x_B3HW, restored_B3HW, round_trip_B3HW)
        a, b = self.gates_from(statistics, x_B3HW)
        correction = blend(a, x_B3HW - round_trip_B3HW) + blend(b, round_trip_B3HW - restored_B3HW)
        out = restored_B3HW + weight * correction
        if self.has_colour and weight != 0:  # then the input's colour, the fitted share of it
            out = out.clamp(-1, 1)
            share = weight * self.colour_share(statistics, x_B3HW).view(-1, 1, 1, 1)
            out = out + share * (input_colour(x_B3HW, out)[1] - out)
        return out


def tone_curve(x_B3HW: torch.Tensor, target_B3HW: torch.Tensor, pool: int = 4) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per image, the power curve ``u -> k * u ** gamma`` (u in [0, 1], the same for R, G and B) that best maps
    ``target``'s levels to ``x``'s: least squares on logs, each side's logs averaged over RGB and ``pool`` x
    ``pool`` pixels (a mean of logs, so a power curve stays exact however colourful the pixels), weighted by the
    input's level so that dark noisy pixels count little. Returns (k, gamma), each (B,): for a low-light input and
    its restored output, the darkening (``rvar_plugins``' low_light is ``gain * u ** gamma`` plus noise)."""
    def logs(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(torch.log(((t.float() + 1) / 2).clamp_min(1 / 255)).mean(1, keepdim=True), pool).flatten(1)

    u = (x_B3HW.float() + 1) / 2
    level = F.avg_pool2d(u.mean(1, keepdim=True), pool).flatten(1)
    lit = F.avg_pool2d((u.amin(1, keepdim=True) > 2 / 255).float(), pool).flatten(1) == 1  # no clipped black
    lx, lt = logs(x_B3HW), logs(target_B3HW)
    w = level * (lit & (lt > math.log(0.02)))
    total = w.sum(1).clamp_min(1e-6)
    mx, mt = (w * lx).sum(1) / total, (w * lt).sum(1) / total
    gamma = (w * (lx - mx[:, None]) * (lt - mt[:, None])).sum(1) / \
        (w * (lt - mt[:, None]) ** 2).sum(1).clamp_min(1e-6)
    gamma = gamma.clamp(0.5, 5.0)
    k = torch.exp(mx - gamma * mt).clamp(1e-2, 2.0)
    return k, gamma


def input_colour(x_B3HW: torch.Tensor, target_B3HW: torch.Tensor, smooth: int = 5
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The input's own colours at ``target``'s brightness. Returns (X, C), images in [-1, 1]: X, the input brought
    up by the inverse of :func:`tone_curve` (one curve for R, G and B, so the input's hues are kept); C, ``target``'s
    brightness (the mean over RGB) with X's colour (the rest), smoothed over a ``smooth`` px box (the curve
    amplifies the input's noise)."""
    k, gamma = (t.view(-1, 1, 1, 1) for t in tone_curve(x_B3HW, target_B3HW))
    X = (((x_B3HW.float() + 1) / 2 / k).clamp(0, 1) ** (1 / gamma)) * 2 - 1
    colour = _box(X - X.mean(1, keepdim=True), smooth)  # every channel alike
    return X, target_B3HW.float().mean(1, keepdim=True) + colour


def blend(gate: torch.Tensor, difference: torch.Tensor) -> torch.Tensor:
    """A gate times a difference image (RGB on dim -3). A gate of one channel scales it; one of two
    (``FidelityConfig.chroma``) scales its brightness (the mean over RGB) by the first and its colour (the rest)
    by the second."""
    if gate.shape[-3] == 1:
        return gate * difference
    brightness = difference.mean(-3, keepdim=True)
    return gate[..., :1, :, :] * brightness + gate[..., 1:2, :, :] * (difference - brightness)


def fit_switch(gate: FidelityGate, features_BF: torch.Tensor, labels_B: torch.Tensor, terms_B3: torch.Tensor,
               floor: float, steps: int = 400, folds: int = 5) -> Dict[str, Any]:
    """Fit ``gate``'s image-level switch (``FidelityConfig.switch_classes``) with its gates fixed, and turn it on.

    Args:
        features_BF: :meth:`FidelityGate.switch_inputs` of B whole images.
        labels_B: each image's label, an index into ``switch_classes`` (-1: none of them; such images count for
            the trusts but not for the classifier).
        terms_B3: per image, with ``c`` the gates' correction ``a (x - T) + b (T - R)`` and ``w = clean - R``:
            the means of ``c^2``, ``c w`` and ``w^2``, so the switched output's error is exactly
            ``(1 - s)^2 c^2 - 2 (1 - s) c w + w^2``; with ``switch_keep`` also, with ``u = x - R``, those of
            ``u^2``, ``c u`` and ``u w`` (six columns: the error is ``A^2 c^2 + kappa^2 u^2 + w^2 + 2 A kappa c u
            - 2 A c w - 2 kappa u w``, ``A = (1 - kappa)(1 - s)``). NaN for images that only teach the classifier
            (degraded images the stage did not restore).
        floor: added to each image's MSE before the log (the fitting stage's PSNR cap).
        steps: Adam steps of each fit.
        folds: the classifier's probabilities that the trusts are fitted on come from ``folds`` fits, each on the
            other folds' images.

    Returns: the classifier's held-out (k-fold) accuracy on the labelled images, each label's trust, ``t`` (and
    with ``switch_keep`` its trust in the input, ``keep``), and how many images the trusts were fitted on (those
    with terms).
    """
    want = 6 if gate.config.switch_keep else 3
    if terms_B3.shape[1] != want:
        raise ValueError(f"fit_switch: this gate's switch needs {want} terms per image, got {terms_B3.shape[1]}")
    params = [*gate.switch_classifier.parameters(), gate.switch_trust]
    if gate.config.switch_keep:
        params.append(gate.switch_keep)
    frozen = [not p.requires_grad for p in params]  # a fitting stage freezes them while it fits the gates (DDP)
    for p in params:
        p.requires_grad_(True)
    try:
        return _fit_switch(gate, features_BF.float(), labels_B, terms_B3.float(), floor, steps, folds)
    finally:
        for p, was_frozen in zip(params, frozen):
            p.requires_grad_(not was_frozen)


def _fit_switch(gate: FidelityGate, features_BF: torch.Tensor, labels_B: torch.Tensor, terms_B3: torch.Tensor,
                floor: float, steps: int, folds: int) -> Dict[str, Any]:
    labelled = labels_B >= 0
    classifier = gate.switch_classifier
    start = {k: v.clone() for k, v in classifier.state_dict().items()}

    def train(rows: torch.Tensor) -> None:  # cross-entropy on the labelled images among rows, from the start
        classifier.load_state_dict(start)
        rows = rows[labelled[rows]]
        if len(rows) == 0:
            return
        opt = torch.optim.Adam(classifier.parameters(), lr=1e-2, weight_decay=1e-3)
        for _ in range(steps):
            loss = F.cross_entropy(classifier(features_BF[rows]), labels_B[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()

    # 1. which degradation each image shows. The trusts are fitted on probabilities the classifier gives images
    # it was not trained on (k-fold), so they price in its mistakes: on its own training images it is always right
    order = torch.randperm(len(features_BF), generator=torch.Generator().manual_seed(0)).to(features_BF.device)
    probabilities = torch.zeros(len(features_BF), len(gate.config.switch_classes), device=features_BF.device)
    for fold in order.chunk(min(folds, len(order))):
        train(order[~torch.isin(order, fold)])
        with torch.no_grad():
            probabilities[fold] = torch.softmax(classifier(features_BF[fold]), dim=1)
    with torch.no_grad():
        accuracy = float((probabilities.argmax(1) == labels_B)[labelled].float().mean()) if labelled.any() else 0.0
    train(torch.arange(len(features_BF)))  # the classifier kept: trained on every image
    # 2. how far to trust the restorer on each label: the mean log MSE of the switched output, classifier fixed,
    # on the images that were restored
    restored = ~terms_B3.isnan().any(1)
    keeps = gate.config.switch_keep
    opt = torch.optim.Adam([gate.switch_trust] + ([gate.switch_keep] if keeps else []), lr=5e-2)
    terms = terms_B3[restored]
    probabilities = probabilities[restored]
    for _ in range(steps):
        s = probabilities @ torch.sigmoid(gate.switch_trust)
        kappa = probabilities @ torch.sigmoid(gate.switch_keep) if keeps else torch.zeros_like(s)
        loss = torch.log(switched_mse(terms, s, kappa) + floor).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    gate.switch_fitted.fill_(1.0)
    classes = gate.config.switch_classes
    summary = {"accuracy": accuracy, "trust": {c: float(t) for c, t in zip(classes, torch.sigmoid(gate.switch_trust.detach()))},
               "restored": int(restored.sum())}
    if keeps:
        summary["keep"] = {c: float(k) for c, k in zip(classes, torch.sigmoid(gate.switch_keep.detach()))}
    return summary


def colour_terms(x_B3HW: torch.Tensor, out_B3HW: torch.Tensor, clean_B3HW: torch.Tensor) -> torch.Tensor:
    """(B, 3): what :func:`fit_colour` needs of each gated output ``out`` (clamped to [-1, 1]): with ``v`` the move
    to the input's colour (:func:`input_colour`) and ``e = out - clean``, the means of ``v^2``, ``e v`` and ``e^2``
    (the output's MSE at share ``w`` is ``e^2 + 2 w e v + w^2 v^2``)."""
    v = input_colour(x_B3HW, out_B3HW)[1] - out_B3HW
    e = out_B3HW - clean_B3HW
    return torch.stack([(v * v).mean((1, 2, 3)), (e * v).mean((1, 2, 3)), (e * e).mean((1, 2, 3))], dim=1)


def fit_colour(gate: FidelityGate, probabilities_BL: torch.Tensor, terms_B3: torch.Tensor, floor: float,
               steps: int = 400) -> Dict[str, float]:
    """Fit ``gate``'s share of the input's colour per label (``FidelityConfig.colour``) on the images of
    :func:`colour_terms` (the gated outputs with the switch as fitted), weighted by the classifier's probabilities
    of each image's labels; minimises their mean log MSE (``floor`` added, the fitting stage's PSNR cap) and turns
    the colour path on. Returns each label's share."""
    if not gate.config.colour:
        raise ValueError("fit_colour: this gate has no colour path (FidelityConfig.colour is False)")
    p, terms = probabilities_BL.float().detach(), terms_B3.float().detach()
    v2, ev, e2 = terms.unbind(1)
    logits = gate.switch_colour
    with torch.enable_grad():
        frozen = not logits.requires_grad
        logits.requires_grad_(True)
        try:
            with torch.no_grad():
                logits.fill_(-2.0)  # a share of 0.12 to start
            opt = torch.optim.Adam([logits], lr=5e-2)
            for _ in range(steps):
                w = p @ torch.sigmoid(logits)
                loss = torch.log((e2 + 2 * w * ev + w * w * v2).clamp_min(0) + floor).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        finally:
            logits.requires_grad_(not frozen)
    gate.colour_fitted.fill_(1.0)
    return {c: float(w) for c, w in zip(gate.config.switch_classes, torch.sigmoid(logits.detach()))}


def switched_mse(terms_BK: torch.Tensor, s_B: torch.Tensor, kappa_B: torch.Tensor) -> torch.Tensor:
    """(B,): each image's MSE with the switch's trusts ``s`` and ``kappa``, exactly, from :func:`fit_switch`'s
    terms (three columns: ``kappa`` must be 0)."""
    A = (1 - kappa_B) * (1 - s_B)
    c2, cw, w2 = terms_BK[:, :3].unbind(1)
    mse = A * A * c2 - 2 * A * cw + w2
    if terms_BK.shape[1] == 6:
        u2, cu, uw = terms_BK[:, 3:].unbind(1)
        mse = mse + kappa_B * kappa_B * u2 + 2 * A * kappa_B * cu - 2 * kappa_B * uw
    return mse.clamp_min(0)


__all__ = ["FidelityConfig", "FidelityGate", "FEATURES", "IMAGE_FEATURES", "SWITCH_FEATURES", "blend",
           "colour_terms", "degradation_descriptors", "fit_colour", "fit_switch", "highlight_level", "input_colour", "switch_features",
           "switched_mse", "tone_curve"]
