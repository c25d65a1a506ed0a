"""The two pixel ranges of rvar: [0, 1] for batches, files and metrics, [-1, 1] inside the networks (rvar.nn)."""
from __future__ import annotations

import torch


def to_signed(img_B3HW: torch.Tensor) -> torch.Tensor:
    """[0, 1] (the batch contract) -> [-1, 1] (the tokenizer's range)."""
    return img_B3HW * 2 - 1


def to_unit(img_B3HW: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] as float32, clamped (metrics, image grids, restored images)."""
    return ((img_B3HW.float() + 1) / 2).clamp(0, 1)
