"""The degradation pipeline: a YAML list of registered degradations, reproducible from (seed, sample key).

A pipeline is data, configured in the DataModule::

    degradations:
      - {name: rain, weight: 2.0}
      - {name: gaussian_noise, options: {sigma: [15, 50]}}
      - {name: fog, p: 0.5}
    pipeline_mode: one_of      # one_of: one op per sample, picked by weight; chain: each op with probability p

Every sample gets its own ``torch.Generator`` seeded from ``(base seed, stream, key)`` by :func:`sample_seed`
(a hash, so it is the same in every dataloader worker, on every DDP rank and on any device). The training
key folds in the epoch (see :class:`rvar.data.datasets.EpochSampler`), so crops and degradations change from
epoch to epoch while validation and test keys do not.

The plan drawn for a sample (which ops, each with its own seed) is split by where ops run: per-image
Albumentations ops (``device_op = False``) run in the dataloader worker, batched Kornia ops on the accelerator
in ``on_after_batch_transfer``. In ``chain`` mode the worker ops of a plan are applied before its device ops.
Device ops are applied image by image, each with its own generator, so a sample's result never depends on
which other samples share its batch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from rvar.errors import UserError
from rvar.registry import DEGRADATIONS

MODES = ("one_of", "chain")
DEFAULT_DEGRADATIONS = ("haze", "rain", "snow", "low_light", "motion_blur")  # RestoreVAR's five tasks


def sample_seed(base_seed: int, stream: str, key: int) -> int:
    """A stable 63-bit seed for one sample: the same for the same arguments in any process."""
    digest = hashlib.blake2b(f"{int(base_seed)}/{stream}/{int(key)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def make_degradation(name: str, options: Optional[Mapping[str, Any]] = None) -> Any:
    """Instantiate the registered degradation ``name`` (a class gets ``options``; a function is returned as is).

    Raises:
        UserError: unknown name (listing the known ones) or options the op does not accept.
    """
    target = DEGRADATIONS.get(name)
    options = dict(options or {})
    if isinstance(target, type):
        try:
            return target(**options)
        except (TypeError, ValueError) as exc:
            raise UserError(f"degradation {name!r}: bad options {options}: {exc}") from None
    if options:
        raise UserError(f"degradation {name!r} is a function and takes no options (got {options})")
    return target


def is_device_op(op: Any) -> bool:
    """True for batched ops that run on the accelerator (the default when an op does not say)."""
    return bool(getattr(op, "device_op", True))


@dataclass(frozen=True)
class PlanStep:
    """One op to apply to one sample: its position in the pipeline and its own generator seed."""

    position: int
    seed: int


@dataclass(frozen=True)
class DegradationSpec:
    """One entry of the YAML list (``name``, probability ``p``, ``weight`` for one_of, ``options``)."""

    name: str
    p: float = 1.0
    weight: float = 1.0
    options: Optional[Dict[str, Any]] = None


class DegradationPipeline:
    """Registered degradations applied per sample, reproducibly.

    Args:
        specs: entries like ``{name: rain, p: 1.0, weight: 2.0, options: {...}}`` (or bare names).
        mode: ``one_of`` (pick one op per sample by weight, then apply it with its ``p``) or ``chain``
            (apply each op in list order with its probability ``p``).
        seed: base seed; a sample's randomness is a function of (seed, stream, key) only.
    """

    def __init__(self, specs: Sequence[Mapping[str, Any] | str], mode: str = "one_of", seed: int = 0) -> None:
        if mode not in MODES:
            raise UserError(f"pipeline mode {mode!r} is not one of {', '.join(MODES)}")
        self.specs = [self._spec(s) for s in specs]
        self.mode, self.seed = mode, int(seed)
        self.ops = [make_degradation(s.name, s.options) for s in self.specs]
        self.device = [is_device_op(op) for op in self.ops]
        weights = [s.weight for s in self.specs]
        self._weights = torch.tensor(weights, dtype=torch.float64) if weights else None
        if self._weights is not None and (self._weights < 0).any() | (self._weights.sum() <= 0):
            raise UserError("degradation weights must be non-negative with a positive sum")

    @staticmethod
    def _spec(entry: Mapping[str, Any] | str) -> DegradationSpec:
        if isinstance(entry, str):
            return DegradationSpec(entry)
        unknown = set(entry) - {"name", "p", "weight", "options"}
        if "name" not in entry or unknown:
            raise UserError(f"degradation entry {dict(entry)} needs 'name' and only p, weight, options")
        return DegradationSpec(str(entry["name"]), float(entry.get("p", 1.0)), float(entry.get("weight", 1.0)),
                               dict(entry.get("options") or {}))

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def has_device_ops(self) -> bool:
        return any(self.device)

    def plan(self, sample_seed_: int) -> List[PlanStep]:
        """The ops (with their seeds) to apply to the sample whose seed is ``sample_seed_``."""
        if not self.ops:
            return []
        generator = torch.Generator().manual_seed(sample_seed_)
        if self.mode == "one_of":
            chosen = [int(torch.multinomial(self._weights, 1, generator=generator))]
        else:
            chosen = list(range(len(self.ops)))
        steps = []
        for position in chosen:
            draw = float(torch.rand(1, generator=generator))
            op_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            if draw < self.specs[position].p:
                steps.append(PlanStep(position, op_seed))
        return steps

    def label(self, plan: Sequence[PlanStep]) -> str:
        """The degradation label of a plan: op names joined by ``+``, or ``"none"``."""
        return "+".join(self.specs[s.position].name for s in plan) or "none"

    def apply(self, image_CHW: torch.Tensor, plan: Sequence[PlanStep], device_ops: Optional[bool] = None
              ) -> torch.Tensor:
        """Apply the steps of ``plan`` to one image; ``device_ops`` True/False keeps only that kind, None all."""
        image_1CHW = image_CHW[None]
        for step in plan:
            if device_ops is not None and self.device[step.position] != device_ops:
                continue
            generator = torch.Generator().manual_seed(step.seed)
            image_1CHW = self.ops[step.position](image_1CHW, generator).clamp(0, 1)
        return image_1CHW[0]

    def apply_worker_ops(self, image_CHW: torch.Tensor, sample_seed_: int) -> Tuple[torch.Tensor, str]:
        """Worker stage: apply the per-image ops of this sample's plan; return the image and its label."""
        plan = self.plan(sample_seed_)
        return self.apply(image_CHW, plan, device_ops=False), self.label(plan)

    def apply_device_ops(self, images_BCHW: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Device stage: apply the batched ops of each sample's plan, sample by sample."""
        if not self.has_device_ops:
            return images_BCHW
        out = [self.apply(image_CHW, self.plan(int(seed)), device_ops=True)
               for image_CHW, seed in zip(images_BCHW, seeds)]
        return torch.stack(out)

    def __call__(self, image_CHW: torch.Tensor, sample_seed_: int) -> Tuple[torch.Tensor, str]:
        """Both stages at once (worker ops first): the degraded image and its label."""
        plan = self.plan(sample_seed_)
        degraded = self.apply(image_CHW, plan, device_ops=False)
        return self.apply(degraded, plan, device_ops=True), self.label(plan)

    def __repr__(self) -> str:
        return f"DegradationPipeline({[s.name for s in self.specs]}, mode={self.mode!r}, seed={self.seed})"
