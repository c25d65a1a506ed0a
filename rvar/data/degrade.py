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

The plan of a sample is drawn once, in the dataloader worker (:meth:`DegradationPipeline.plan`): a LongTensor
with one entry per op of the pipeline, the op's own generator seed, or ``-1`` where the op is not applied.
The worker applies the per-image Albumentations ops (``device_op = False``) and the batch carries the collated
plans as its public ``plan`` field (B, ops); ``on_after_batch_transfer`` applies the batched Kornia ops from it,
each op once per batch for the samples that use it, and drops the field. In ``chain`` mode the worker ops
come before the device ops. An op with ``per_image_generators = True`` takes one generator per image (a
list); others are called image by image. Either way a sample's result never depends on its batch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch

from rvar.errors import UserError
from rvar.registry import DEGRADATIONS

MODES = ("one_of", "chain")
NOT_APPLIED = -1  # a plan entry for an op the sample skips
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

    def plan(self, sample_seed_: int) -> torch.Tensor:
        """The plan of the sample whose seed is ``sample_seed_``: per op its seed, or ``-1`` (not applied)."""
        plan = torch.full((len(self.ops),), NOT_APPLIED, dtype=torch.long)
        if not self.ops:
            return plan
        generator = torch.Generator().manual_seed(sample_seed_)
        chosen = ([int(torch.multinomial(self._weights, 1, generator=generator))] if self.mode == "one_of"
                  else range(len(self.ops)))
        for position in chosen:
            draw = float(torch.rand(1, generator=generator))
            op_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            if draw < self.specs[position].p:
                plan[position] = op_seed
        return plan

    def label(self, plan: torch.Tensor) -> str:
        """The degradation label of one plan: op names joined by ``+``, or ``"none"``."""
        return "+".join(self.specs[p].name for p in (plan >= 0).nonzero().flatten().tolist()) or "none"

    def apply(self, images_BCHW: torch.Tensor, plans: torch.Tensor, device_ops: Optional[bool] = None
              ) -> torch.Tensor:
        """Apply each image's plan (``plans`` (B, ops)); ``device_ops`` True/False keeps only that kind, None all."""
        out, plans = images_BCHW.clone(), plans.cpu()
        for position, op in enumerate(self.ops):
            if device_ops is not None and self.device[position] != device_ops:
                continue
            rows = (plans[:, position] >= 0).nonzero().flatten().tolist()
            generators = [torch.Generator().manual_seed(int(plans[r, position])) for r in rows]
            if rows and getattr(op, "per_image_generators", False):
                out[rows] = op(out[rows], generators).clamp(0, 1)
                continue
            for row, generator in zip(rows, generators):
                out[row] = op(out[row:row + 1], generator).clamp(0, 1)[0]
        return out

    def worker_stage(self, clean_CHW: torch.Tensor, sample_seed_: int) -> Dict[str, Any]:
        """Draw the sample's plan, apply its per-image ops: ``degraded``, ``degradation`` (label) and ``plan``."""
        plan = self.plan(sample_seed_)
        degraded_CHW = self.apply(clean_CHW[None], plan[None], device_ops=False)[0]
        return {"degraded": degraded_CHW, "degradation": self.label(plan), "plan": plan}

    def __call__(self, image_CHW: torch.Tensor, sample_seed_: int) -> Tuple[torch.Tensor, str]:
        """Both stages at once (worker ops first): the degraded image and its label."""
        item = self.worker_stage(image_CHW, sample_seed_)
        return self.apply(item["degraded"][None], item["plan"][None], device_ops=True)[0], item["degradation"]

    def __repr__(self) -> str:
        return f"DegradationPipeline({[s.name for s in self.specs]}, mode={self.mode!r}, seed={self.seed})"
