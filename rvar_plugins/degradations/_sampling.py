"""Helpers shared by the built-in degradations: parameter ranges and draws from an explicit generator.

Every random number comes from the ``torch.Generator`` the caller passes (never the global RNG), and is drawn
on the CPU, so a degradation gives the same result for the same seed on any device. Where a helper takes
``Generators``, a list (one generator per image, see :mod:`rvar.data.degrade`) draws each image's values from
its own generator, in the order one generator would draw them for a batch of one.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple, Union

import torch

Range = Union[float, Sequence[float]]
Generators = Union[torch.Generator, Sequence[torch.Generator]]


def as_range(value: Range, name: str) -> Tuple[float, float]:
    """Accept a number (fixed value) or a ``[low, high]`` pair from YAML; return ``(low, high)``."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name}: low {low} is above high {high}")
    return low, high


def draw(sample: Callable[..., torch.Tensor], generator: Generators, shape: Sequence[int]) -> torch.Tensor:
    """``sample(shape)`` (``torch.rand``, ``torch.randn``) from one generator, or from each of a list (shape[0])."""
    if isinstance(generator, torch.Generator):
        return sample(tuple(shape), generator=generator)
    return torch.stack([sample(tuple(shape[1:]), generator=g) for g in generator])


def uniform(generator: Generators, bounds: Tuple[float, float], n: int) -> torch.Tensor:
    """``n`` draws, uniform in ``bounds``, as a CPU float32 tensor (n,)."""
    low, high = bounds
    return draw(torch.rand, generator, (n,)) * (high - low) + low


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer in ``[low, high]`` (both inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def randint_each(generator: Generators, low: int, high: int, n: int) -> List[int]:
    """One integer in ``[low, high]`` per image: from each generator of a list, else one value for all ``n``."""
    if isinstance(generator, torch.Generator):
        return [randint(generator, low, high)] * n
    return [randint(g, low, high) for g in generator]


def seed_from(generator: torch.Generator) -> int:
    """An int seed for a library with its own RNG (Albumentations), drawn from ``generator``."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def normal_like(images: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Standard normal noise with the shape of ``images``, drawn on the CPU then moved to their device."""
    return draw(torch.randn, generator, images.shape).to(images.device, images.dtype)


def by_value(values: Sequence[int], images: torch.Tensor,
             apply: Callable[[torch.Tensor, int, List[int]], torch.Tensor]) -> torch.Tensor:
    """``apply(images[rows], value, rows)`` once per distinct value (a kernel size), reassembled in order."""
    out = torch.empty_like(images)
    for value in set(values):
        rows = [i for i, v in enumerate(values) if v == value]
        out[rows] = apply(images[rows], value, rows)
    return out


def per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """(B,) parameters -> (B, 1, 1, 1) on the images' device, for broadcasting."""
    return values.to(images.device, images.dtype).view(-1, 1, 1, 1)
