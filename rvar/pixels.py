"""The two pixel ranges of rvar: [0, 1] for batches, files and metrics, [-1, 1] inside the networks (rvar.nn)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def to_signed(img_B3HW: torch.Tensor) -> torch.Tensor:
    """[0, 1] (the batch contract) -> [-1, 1] (the tokenizer's range)."""
    return img_B3HW * 2 - 1


def to_unit(img_B3HW: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] as float32, clamped (metrics, image grids, restored images)."""
    return ((img_B3HW.float() + 1) / 2).clamp(0, 1)


def whole_image_context(img_B3HW: torch.Tensor, size: int) -> torch.Tensor:
    """Whole images resized (bilinear, anti-aliased) to ``size`` x ``size``, in the input's range: the context a
    refiner with ``whole_image_context`` reads beside the tiles of a larger image, in training and at restore."""
    if tuple(img_B3HW.shape[-2:]) == (size, size):
        return img_B3HW
    return F.interpolate(img_B3HW.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
