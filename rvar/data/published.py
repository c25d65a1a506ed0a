"""RestoreVAR's training data path: its paired transforms and its balanced sampler.

Reference: sudraj2002/RestoreVAR ``utils/restoration_loader.py``, ``utils/paired_transform.py``, ``utils/data.py``
and ``utils/data_sampler.py`` (``DistWeightedInfiniteBatchSampler``):

* **training transform** (``train_transform: restorevar``): each image's shorter side resized to
  ``round(1.125 * crop)`` (576 for 512) with PIL's Lanczos, aspect kept (each image on its own, as torchvision's
  ``Resize(int)``); one ``crop`` x ``crop`` random crop whose offsets are drawn from the clean image's size and
  applied to both; no flip (the scripts leave ``hflip`` off), no normalisation. rvar keeps [0, 1] in batches; the
  networks map it to [-1, 1] as ``2x - 1``, the reference's scaling.
* **validation transform** (``val_transform: resize``): both images resized straight to ``crop`` x ``crop`` with
  Lanczos (aspect not kept), no crop.
* **balanced sampler** (``sampler: balanced``): each epoch draws ``ceil(N / global_batch) * global_batch`` pair
  indices *with replacement*, each pair weighted by ``1 / (number of pairs of its degradation)``, from a generator
  seeded with ``epoch + seed`` (the same on every rank), and gives each rank a contiguous share.

The sampler yields keys ``epoch * total + position``; the dataset turns a key into the pair drawn at that position
(:func:`balanced_draw`), and its crop offsets come from a generator seeded by the key, so a sample is the same in
any worker and after a mid-epoch resume.

Shapes: C channels (3), H/W image side.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from rvar.errors import ImageError

TRAIN_TRANSFORMS = ("crop", "restorevar")
VAL_TRANSFORMS = ("crop", "resize")
SAMPLERS = ("keys", "balanced")
RESIZE_RATIO = 1.125  # the reference's mid_reso: shorter side = round(1.125 * crop) before cropping


# 1. the transforms ---------------------------------------------------------------------------------------------
def _to_pil(image_CHW: torch.Tensor) -> Image.Image:
    pixels = (image_CHW.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels))


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def lanczos(image_CHW: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, height, width) with PIL's Lanczos on the 8-bit pixels."""
    if tuple(image_CHW.shape[-2:]) == (height, width):
        return image_CHW
    return _from_pil(_to_pil(image_CHW).resize((width, height), Image.LANCZOS))


def resize_shorter_side(image_CHW: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to ``size``, the longer one to ``int(size * long / short)`` (torchvision ``Resize(int)``)."""
    height, width = image_CHW.shape[-2:]
    if height <= width:
        return lanczos(image_CHW, size, int(size * width / height))
    return lanczos(image_CHW, int(size * height / width), size)


def restorevar_train_pair(degraded_CHW: torch.Tensor, clean_CHW: torch.Tensor, crop_size: int,
                          generator: torch.Generator, path: str = "") -> tuple:
    """The reference's training transform of a pair: resize each, one random crop placed by the clean image."""
    short = round(RESIZE_RATIO * crop_size)
    degraded_CHW, clean_CHW = resize_shorter_side(degraded_CHW, short), resize_shorter_side(clean_CHW, short)
    height, width = clean_CHW.shape[-2:]
    if degraded_CHW.shape[-2] < height or degraded_CHW.shape[-1] < width:
        raise ImageError(f"{path}: after resizing, {tuple(degraded_CHW.shape[1:])} is smaller than its target "
                         f"{tuple(clean_CHW.shape[1:])}")
    top = int(torch.randint(0, height - crop_size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - crop_size + 1, (1,), generator=generator))
    window = (slice(None), slice(top, top + crop_size), slice(left, left + crop_size))
    return degraded_CHW[window].contiguous(), clean_CHW[window].contiguous()


def restorevar_val_pair(degraded_CHW: torch.Tensor, clean_CHW: torch.Tensor, size: int) -> tuple:
    """The reference's validation transform: both straight to ``size`` x ``size`` (Lanczos, aspect not kept)."""
    return lanczos(degraded_CHW, size, size), lanczos(clean_CHW, size, size)


# 2. the balanced sampler ---------------------------------------------------------------------------------------
def balanced_total(pairs: int, global_batch: int) -> int:
    """Draws per epoch: ``ceil(pairs / global_batch) * global_batch``."""
    return math.ceil(pairs / global_batch) * global_batch


def balanced_draw(labels: Sequence[str], total: int, seed: int) -> torch.Tensor:
    """``total`` pair indices drawn with replacement, each pair weighted by 1 / (pairs of its degradation),
    normalised in float64 as the reference does, from a generator seeded with ``seed`` (``epoch + base seed``)."""
    counts: dict = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.float64)
    weights /= weights.sum()
    generator = torch.Generator().manual_seed(int(seed))
    return torch.multinomial(weights, num_samples=total, replacement=True, generator=generator)


class BalancedSampler(DistributedSampler):
    """Keys ``epoch * total + position`` of this rank's contiguous share of the epoch's ``total`` draws.

    A ``DistributedSampler`` so that Lightning keeps it as it is under DDP (and calls :meth:`set_epoch`). Shares
    follow the reference's ``linspace(0, total, ranks + 1)`` boundaries; with ``total`` a multiple of the global
    batch they are equal.
    """

    def __init__(self, total: int, num_replicas: int = 1, rank: int = 0) -> None:
        # not DistributedSampler.__init__: it reads torch.distributed and needs a dataset; the keys need neither
        self.total, self.num_replicas, self.rank, self.epoch = int(total), int(num_replicas), int(rank), 0
        bounds = torch.linspace(0, self.total, self.num_replicas + 1, dtype=torch.int)
        self.begin, self.end = int(bounds[self.rank]), int(bounds[self.rank + 1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.total + self.begin, self.epoch * self.total + self.end))

    def __len__(self) -> int:
        return self.end - self.begin
