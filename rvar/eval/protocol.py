"""Evaluation protocols: the framework's native-resolution default and RestoreVAR's published one.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), Table 1. Reference code: sudraj2002/RestoreVAR
(``utils/paired_transform.py``, ``metric_utils/val_utils.py``). Its evaluation:

* the degraded input and its ground truth are both resized to 512x512 with Lanczos (a paired transform, whatever
  the original size or aspect ratio; PIL's resampler, as torchvision's ``Resize`` on PIL images) before restoring
  and scoring;
* the restored image and the ground truth are clipped to [0, 1] and quantised to uint8 as ``(x * 255)`` cast to
  uint8 (truncation, in float32), then scored on RGB the way scikit-image's ``peak_signal_noise_ratio`` and
  ``structural_similarity(channel_axis=-1, data_range=255)`` do (7x7 uniform window, sample covariance,
  K1 0.01, K2 0.03, the 3-pixel border left out, mean over channels);
* LPIPS with the AlexNet backbone (used when its weights are in ``$TORCH_HOME``, else skipped with one warning);
* each test set stops after ``max_images`` images (5000 in the reference scripts).

``native`` is rvar's own: images at the model's native size (centre crops), float PSNR/SSIM (torchmetrics,
gaussian window) and LPIPS when present. :func:`format_table1` prints per-dataset results in the layout of the
paper's Table 1 with the published RestoreVAR values as reference rows. How the test images are sized for each
protocol (the paired Lanczos resize, :class:`~rvar.data.evaluation.ProtocolDataset`) is data preparation and lives in
:mod:`rvar.data.evaluation`.

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rvar.data.evaluation import PROTOCOLS, to_uint8
from rvar.errors import UserError

# RestoreVAR's Table 1 (arXiv 2505.18047): PSNR / SSIM / LPIPS of the released model per test set.
PAPER_TABLE1: Dict[str, Dict[str, float]] = {
    "RESIDE": {"psnr": 24.67, "ssim": 0.821, "lpips": 0.074},
    "Snow100K": {"psnr": 24.05, "ssim": 0.713, "lpips": 0.156},
    "Rain13K": {"psnr": 23.97, "ssim": 0.700, "lpips": 0.153},
    "LOLv1": {"psnr": 21.72, "ssim": 0.782, "lpips": 0.126},
    "GoPro": {"psnr": 23.96, "ssim": 0.737, "lpips": 0.167},
}
# degradation labels (paired-folder names, manifest labels, registered degradations) -> Table 1 test set
_ALIASES: Dict[str, str] = {
    "reside": "RESIDE", "reside-ots": "RESIDE", "reside-sots": "RESIDE", "sots": "RESIDE", "sots-outdoor": "RESIDE",
    "ots": "RESIDE", "haze": "RESIDE", "dehazing": "RESIDE",
    "snow100k": "Snow100K", "snow": "Snow100K", "desnowing": "Snow100K",
    "rain13k": "Rain13K", "rain": "Rain13K", "deraining": "Rain13K",
    "lolv1": "LOLv1", "lol": "LOLv1", "low_light": "LOLv1", "lowlight": "LOLv1", "low-light": "LOLv1",
    "gopro": "GoPro", "motion_blur": "GoPro", "blur": "GoPro", "deblurring": "GoPro", "motion blur": "GoPro",
}
TABLE1_SETS = tuple(PAPER_TABLE1)


def table1_set(label: str) -> Optional[str]:
    """The Table 1 test set a degradation label belongs to (``Rain13K``, ``haze`` -> ``RESIDE``), else None."""
    return _ALIASES.get(str(label).strip().lower())


@dataclass(frozen=True)
class EvalProtocol:
    """How a test set is scored (the sizing is :class:`rvar.data.evaluation.ProtocolDataset`'s and ``rvar compare``'s).

    Args:
        name: ``native`` or ``restorevar``.
        lpips_net: LPIPS backbone.
    """

    name: str = "native"
    lpips_net: str = "alex"

    @classmethod
    def named(cls, name: str) -> "EvalProtocol":
        if name not in PROTOCOLS:
            raise UserError(f"unknown evaluation protocol {name!r}; known: {', '.join(PROTOCOLS)}")
        return cls(name)


# 1. metrics on quantised RGB ------------------------------------------------------------------------------
def psnr_uint8(pred01_B3HW: torch.Tensor, target01_B3HW: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of the uint8-quantised RGB images, data range 255 (scikit-image's formula). (B,)"""
    pred, target = to_uint8(pred01_B3HW).double(), to_uint8(target01_B3HW).double()
    mse = (pred - target).square().flatten(1).mean(1)
    return 10 * torch.log10(255.0 ** 2 / mse)  # identical images give inf, as scikit-image does


def ssim_uint8(pred01_B3HW: torch.Tensor, target01_B3HW: torch.Tensor, window: int = 7) -> torch.Tensor:
    """SSIM per image as ``skimage.metrics.structural_similarity(channel_axis=-1, data_range=255)``. (B,)

    Uniform ``window`` x ``window`` means with the sample covariance (N / (N - 1)); scikit-image filters the whole
    image and then drops a border of ``window // 2`` pixels, which leaves exactly the windows that lie inside the
    image: the "valid" average pooling below, so the border mode never matters.
    """
    x, y = to_uint8(pred01_B3HW).double(), to_uint8(target01_B3HW).double()
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mean = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731
    ux, uy = mean(x), mean(y)
    cov_norm = window * window / (window * window - 1)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    s = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2))
    return s.mean(dim=(2, 3)).mean(dim=1)  # per channel, then over channels


class ProtocolScorer:
    """Per-image PSNR, SSIM and LPIPS (or None) under a protocol.

    Args:
        protocol: the :class:`EvalProtocol`.
        allow_random_lpips: see :func:`rvar.eval.metrics.load_lpips` (tests only).
    """

    def __init__(self, protocol: EvalProtocol, allow_random_lpips: bool = False) -> None:
        from rvar.eval.metrics import load_lpips

        self.protocol = protocol
        self.lpips = load_lpips(protocol.lpips_net, allow_random_backbone=allow_random_lpips)

    def __call__(self, pred01_B3HW: torch.Tensor, target01_B3HW: torch.Tensor) -> Dict[str, Optional[torch.Tensor]]:
        from rvar.eval.metrics import lpips_per_image, psnr_per_image, ssim_per_image

        if self.protocol.name == "restorevar":
            pred01_B3HW = to_uint8(pred01_B3HW).float() / 255  # LPIPS sees the quantised images too
            target01_B3HW = to_uint8(target01_B3HW).float() / 255
            psnr, ssim = psnr_uint8(pred01_B3HW, target01_B3HW), ssim_uint8(pred01_B3HW, target01_B3HW)
        else:
            psnr, ssim = psnr_per_image(pred01_B3HW, target01_B3HW), ssim_per_image(pred01_B3HW, target01_B3HW)
        lpips = None
        if self.lpips is not None:
            self.lpips.to(pred01_B3HW.device)
            lpips = lpips_per_image(self.lpips, pred01_B3HW, target01_B3HW)
        return {"psnr": psnr.float(), "ssim": ssim.float(), "lpips": None if lpips is None else lpips.float()}


# 2. the Table 1 layout -------------------------------------------------------------------------------------
def table1_rows(per_image: Sequence[Mapping[str, object]]) -> List[Dict[str, object]]:
    """Means per (model, Table 1 test set) from per-image rows ``{model, degradation, psnr, ssim, lpips}``.

    Labels that belong to no Table 1 test set keep their own name (after the five).
    """
    from rvar.eval.metrics import mean

    groups: Dict[tuple, List[Mapping[str, object]]] = {}
    for row in per_image:
        dataset = table1_set(str(row["degradation"])) or str(row["degradation"])
        groups.setdefault((str(row.get("model", "model")), dataset), []).append(row)
    order = {name: n for n, name in enumerate(TABLE1_SETS)}
    return [{"model": model, "dataset": dataset, "images": len(rows),
             "psnr": mean(r["psnr"] for r in rows if np.isfinite(float(r["psnr"]))) or 0.0,
             "ssim": mean(r["ssim"] for r in rows), "lpips": mean(r.get("lpips") for r in rows)}
            for (model, dataset), rows in sorted(groups.items(), key=lambda kv: (order.get(kv[0][1], 99), kv[0][1]))]


def format_table1(rows: Sequence[Mapping[str, object]], protocol: str = "restorevar") -> str:
    """Markdown in the layout of RestoreVAR's Table 1, each test set followed by the paper's values."""
    lines = [f"Evaluation protocol: `{protocol}`" + (" (512x512 Lanczos, uint8 RGB, LPIPS-Alex; the paper's)"
                                                      if protocol == "restorevar" else
                                                      " (native size; not comparable with the paper's rows)"),
             "", "| test set | model | images | PSNR | SSIM | LPIPS |", "|---|---|---:|---:|---:|---:|"]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):  # in order of first appearance
        for row in (r for r in rows if r["dataset"] == dataset):
            lp = "-" if row["lpips"] is None else f"{float(row['lpips']):.3f}"
            lines.append(f"| {dataset} | {row['model']} | {row['images']} | {float(row['psnr']):.2f} | "
                         f"{float(row['ssim']):.3f} | {lp} |")
        if dataset in PAPER_TABLE1:
            ref = PAPER_TABLE1[dataset]
            lines.append(f"| {dataset} | RestoreVAR (paper, Table 1) | - | {ref['psnr']:.2f} | {ref['ssim']:.3f} | "
                         f"{ref['lpips']:.3f} |")
    return "\n".join(lines)
