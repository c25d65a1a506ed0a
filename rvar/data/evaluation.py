"""Test images as each evaluation protocol prepares them: the protocol names, RestoreVAR's paired Lanczos resize
and :class:`ProtocolDataset`, the test set under RestoreVAR's protocol.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), Table 1. Reference code: sudraj2002/RestoreVAR
(``utils/paired_transform.py``): the degraded input and its ground truth are both resized to 512x512 with Lanczos
(PIL's resampler, as torchvision's ``Resize`` on PIL images), whatever the original size or aspect ratio, before
restoring and scoring. The scoring itself (uint8 PSNR/SSIM, LPIPS, the Table 1 layout) is :mod:`rvar.eval.protocol`;
this module holds only what the DataModule needs, so ``rvar.data`` depends on nothing above it.

Shapes: H/W image side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rvar.data.datasets import load_pairs, scan_clean_folders, source_kind
from rvar.data.degrade import sample_seed
from rvar.io import read_image

PROTOCOLS = ("native", "restorevar")


# 1. the paired transform -----------------------------------------------------------------------------------
def to_uint8(x01: torch.Tensor) -> torch.Tensor:
    """RestoreVAR's quantisation: clip to [0, 1], ``x * 255`` in float32, cast (truncates) to uint8."""
    return (x01.detach().float().clamp(0, 1) * 255).to(torch.uint8)


def lanczos_resize(image_CHW: torch.Tensor, size: int) -> torch.Tensor:
    """An image in [0, 1] (3, H, W) resized to (3, size, size) with PIL's Lanczos on its uint8 pixels."""
    pixels = to_uint8(image_CHW).permute(1, 2, 0).cpu().numpy()
    resized = Image.fromarray(np.ascontiguousarray(pixels)).resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float() / 255


def paired_resize(degraded_CHW: torch.Tensor, clean_CHW: torch.Tensor, size: int):
    """The same Lanczos resize of the degraded image and its ground truth, whatever their aspect ratio."""
    return lanczos_resize(degraded_CHW, size), lanczos_resize(clean_CHW, size)


# 2. the test set ------------------------------------------------------------------------------------------
class ProtocolDataset(Dataset):
    """A test set under RestoreVAR's protocol: whole images, Lanczos-resized in pairs to ``size``.

    Paired folders and manifests give (degraded, clean) pairs. Clean folders are resized first and then degraded by
    ``pipeline`` (worker ops here; batched ops after transfer, from ``plan``). Each source stops after
    ``max_images`` images (the reference scripts evaluate one test set per run).

    Items: ``degraded``, ``clean`` (3, size, size) float32 in [0, 1] (uint8 values), ``degradation``, ``index``
    and, for clean sources with a pipeline, ``plan``.
    """

    def __init__(self, sources: Sequence[str | Path], size: int = 512, max_images: Optional[int] = 5000,
                 pipeline=None, seed: int = 0, stream: str = "test") -> None:
        self.size, self.pipeline, self.seed, self.stream = int(size), pipeline, int(seed), stream
        self.items: List[tuple] = []  # (kind, first path, second path or None, label)
        for source in sources:
            found = ([("clean", p, None, None) for p in scan_clean_folders([source])] if source_kind(source) == "clean"
                     else [("pair", e.input_path, e.target_path, e.degradation) for e in load_pairs([source])])
            self.items.extend(found[:max_images] if max_images else found)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int) -> Dict[str, object]:
        kind, first, second, label = self.items[key]
        if kind == "pair":
            degraded, clean = paired_resize(read_image(first).rgb, read_image(second).rgb, self.size)
            return {"degraded": degraded, "clean": clean, "degradation": label, "index": key}
        clean = lanczos_resize(read_image(first).rgb, self.size)
        item = {"degraded": clean, "clean": clean, "degradation": "none", "index": key}
        if self.pipeline is not None:
            item.update(self.pipeline.worker_stage(clean, sample_seed(self.seed, self.stream, key)))
        return item
