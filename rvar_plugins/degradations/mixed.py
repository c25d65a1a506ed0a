"""``mixed``: several registered degradations chained in random order and strength (all-in-one training)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch

from rvar.data.degrade import is_device_op, make_degradation
from rvar.registry import register_degradation
from rvar_plugins.degradations._sampling import Range, as_range, randint, uniform

DEFAULT_MIX = ("rain", "haze", "low_light", "gaussian_noise", "motion_blur", "defocus_blur", "jpeg", "downscale")


@register_degradation("mixed")
class Mixed:
    """Chain ``min_ops`` to ``max_ops`` registered degradations, in random order, each at a random strength.

    The strength ``s`` blends an op's output with its input, ``x + s * (op(x) - x)``. The order, the choice
    of ops and the strengths all come from the generator, so the result is reproducible. ``device_op`` is True
    only when every op in the mix is a device op (the default mix is batched Kornia ops only).

    Args:
        ops: names of registered degradations to draw from; default the eight batched built-ins.
        options: keyword options per op name, e.g. ``{gaussian_noise: {sigma: [5, 15]}}``.
        min_ops: at least this many ops per image, range [1, len(ops)]; default 2.
        max_ops: at most this many ops per image, range [min_ops, len(ops)]; default 3.
        strength: blend strength per op, range (0, 1]; default [0.5, 1.0].
    """

    def __init__(self, ops: Optional[Sequence[str]] = None, options: Optional[Dict[str, Dict[str, Any]]] = None,
                 min_ops: int = 2, max_ops: int = 3, strength: Range = (0.5, 1.0)) -> None:
        names = list(ops) if ops is not None else list(DEFAULT_MIX)
        if "mixed" in names:
            raise ValueError("mixed cannot contain itself")
        self.names = names
        self.ops: List[Any] = [make_degradation(name, (options or {}).get(name)) for name in names]
        self.min_ops, self.max_ops = max(1, int(min_ops)), min(int(max_ops), len(names))
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops {min_ops} is above max_ops {max_ops} (with {len(names)} ops)")
        self.strength = as_range(strength, "strength")
        self.device_op = all(is_device_op(op) for op in self.ops)

    def __call__(self, images_BCHW: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = []
        for image_1CHW in images_BCHW.split(1):  # a different recipe per image
            count = randint(generator, self.min_ops, self.max_ops)
            order = torch.randperm(len(self.ops), generator=generator)[:count].tolist()
            for position in order:
                strength = float(uniform(generator, self.strength, 1))
                degraded = self.ops[position](image_1CHW, generator)
                image_1CHW = (image_1CHW + strength * (degraded - image_1CHW)).clamp(0, 1)
            out.append(image_1CHW)
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"Mixed(ops={self.names}, min_ops={self.min_ops}, max_ops={self.max_ops}, strength={self.strength})"
