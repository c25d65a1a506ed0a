"""Helpers shared by the built-in degradations: parameter ranges and draws from an explicit generator.

Every random number comes from the ``torch.Generator`` the caller passes (never the global RNG), and is drawn
on the CPU, so a degradation gives the same result for the same seed on any device.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch

Range = Union[float, Sequence[float]]


def as_range(value: Range, name: str) -> Tuple[float, float]:
    """Accept a number (fixed value) or a ``[low, high]`` pair from YAML; return ``(low, high)``."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name}: low {low} is above high {high}")
    return low, high


def uniform(generator: torch.Generator, bounds: Tuple[float, float], n: int) -> torch.Tensor:
    """``n`` draws, uniform in ``bounds``, as a CPU float32 tensor (n,)."""
    low, high = bounds
    return torch.rand(n, generator=generator) * (high - low) + low


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer in ``[low, high]`` (both inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def seed_from(generator: torch.Generator) -> int:
    """An int seed for a library with its own RNG (Albumentations), drawn from ``generator``."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def normal_like(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise with the shape of ``images``, drawn on the CPU then moved to their device."""
    return torch.randn(images.shape, generator=generator).to(images.device, images.dtype)


def rand_like(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform [0, 1) noise with the shape of ``images``, drawn on the CPU then moved to their device."""
    return torch.rand(images.shape, generator=generator).to(images.device, images.dtype)


def per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """(B,) parameters -> (B, 1, 1, 1) on the images' device, for broadcasting."""
    return values.to(images.device, images.dtype).view(-1, 1, 1, 1)
