"""The published trainer's optimisation recipe: parameter groups, the learning-rate rule and its schedule.

Reference: sudraj2002/RestoreVAR (built on FoundationVision/VAR) ``train.py`` (``nowd_keys``, AdamW),
``utils/arg_util.py`` (``tlr = ac * tblr * glb_batch_size / 256``; ``wp = ep / 50`` when 0) and
``utils/lr_control.py`` (``filter_params``, ``lr_wd_annealing``). Gradient clipping (total L2 norm 2 over every
trainable parameter) is Lightning's ``trainer.gradient_clip_val``, which computes the same coefficient
``min(1, 2 / (norm + 1e-6))``. ``tests/unit/test_train_parity.py`` checks the whole recipe against two optimizer
steps taken by the reference trainer.

:class:`OptimizationConfig` is a stage argument (``model.init_args.optimization``); its defaults are rvar's own
recipe (one group, every trainable parameter decayed, the optimizer's rate held constant), which the tiny CPU
configs use. ``experiments/restorevar.yaml`` and ``experiments/refiner.yaml`` set the published values.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from rvar.errors import UserError

# ``train.py``'s ``nowd_keys``: a parameter whose name contains one of these gets no weight decay
RESTOREVAR_NO_WEIGHT_DECAY = ("cls_token", "start_token", "task_token", "cfg_uncond", "pos_embed", "pos_1LC",
                              "pos_start", "start_pos", "lvl_embed", "gamma", "beta", "ada_gss", "moe_bias",
                              "scale_mul")
SCHEDULES = ("constant", "lin0")


@dataclass
class OptimizationConfig:
    """How a stage turns its injected optimizer into a training recipe.

    Args:
        base_lr: learning rate per 256 samples (the reference's ``tblr``): the optimizer's rate becomes
            ``base_lr * global_batch / 256``. None: the optimizer's own ``lr``, unscaled.
        global_batch_size: the batch the rule above assumes; None: per-device ``batch_size`` x devices x nodes x
            ``accumulate_grad_batches``, read from the trainer and the data.
        no_weight_decay: None: one group, every trainable parameter decayed (rvar's recipe). A list of name
            substrings: the reference's two groups, where a parameter is *not* decayed if it is 1-D, its name
            ends in ``bias`` or contains one of the substrings (:data:`RESTOREVAR_NO_WEIGHT_DECAY`); 0-D gains
            are decayed. Groups come in order of first appearance, as ``filter_params`` builds them.
        schedule: ``constant`` or ``lin0`` (after the warm-up, flat for ``flat_fraction`` of the remaining steps,
            then linear down to ``final_lr_fraction`` of the peak at the last step).
        warmup_epochs: warm-up length in epochs (the reference: ``ep / 50``, one epoch of 50).
        warmup_start: warm-up factor at step 0, rising linearly to 1 (the reference's ``wp0``; its scripts pass 1.0,
            which makes the warm-up flat).
        flat_fraction: ``lin0``'s flat share of the steps after warm-up (0.05).
        final_lr_fraction: the rate at the last step as a fraction of the peak (the reference's ``wpe``, 0.01).
    """

    base_lr: Optional[float] = None
    global_batch_size: Optional[int] = None
    no_weight_decay: Optional[List[str]] = None
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    warmup_start: float = 1.0
    flat_fraction: float = 0.05
    final_lr_fraction: float = 0.01

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"optimization.schedule: unknown {self.schedule!r}; known: {', '.join(SCHEDULES)}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# 1. parameter groups ----------------------------------------------------------------------------------------
def is_decayed(name: str, param: torch.Tensor, no_weight_decay: Sequence[str]) -> bool:
    """The reference rule. ``ndim == 1``, not ``<= 1``: 0-D gains (``global_embed_gain``, ``cross_attn.gain``)
    are decayed."""
    return not (param.ndim == 1 or name.endswith("bias") or any(key in name for key in no_weight_decay))


def parameter_groups(named_parameters: Iterable[Tuple[str, nn.Parameter]],
                     no_weight_decay: Optional[Sequence[str]]) -> List[Dict[str, Any]]:
    """Trainable parameters in optimizer groups, each named ``decay`` or ``no_decay``, in order of first appearance.

    The ``decay`` group keeps the optimizer's ``weight_decay``; ``no_decay`` sets it to 0. With
    ``no_weight_decay=None`` there is one ``decay`` group holding every trainable parameter.
    """
    groups: Dict[str, Dict[str, Any]] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        decayed = no_weight_decay is None or is_decayed(name, param, no_weight_decay)
        key = "decay" if decayed else "no_decay"
        if key not in groups:
            groups[key] = {"name": key, "params": [], "param_names": []}
            if not decayed:
                groups[key]["weight_decay"] = 0.0
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return list(groups.values())


# 2. the learning-rate rule and schedule ----------------------------------------------------------------------
def scaled_lr(base_lr: float, global_batch_size: int) -> float:
    """``base_lr * global_batch / 256``, in the reference's order of operations (so the same float)."""
    return base_lr * global_batch_size / 256


def lin0_factor(step: int, total_steps: int, warmup_steps: int, warmup_start: float = 1.0,
                flat_fraction: float = 0.05, final_lr_fraction: float = 0.01) -> float:
    """The ``lin0`` learning-rate factor at optimizer step ``step`` (0-based) of ``total_steps``."""
    if step < warmup_steps:
        return warmup_start + (1 - warmup_start) * step / warmup_steps
    span = total_steps - 1 - warmup_steps
    passed = (step - warmup_steps) / span if span > 0 else 1.0  # 0 -> 1 over the steps after warm-up
    if passed < flat_fraction:
        return 1.0
    return final_lr_fraction + (1 - final_lr_fraction) * (1 - passed) / (1 - flat_fraction)


def global_batch_size(trainer: Any) -> int:
    """Per-device batch x devices x nodes x gradient accumulation, for a running ``trainer``."""
    per_device = getattr(trainer.datamodule, "batch_size", None) if trainer.datamodule is not None else None
    if per_device is None:
        trainer.estimated_stepping_batches  # noqa: B018 (loads the training data)
        per_device = getattr(trainer.train_dataloader, "batch_size", None)
    if per_device is None:
        raise UserError("optimization.base_lr needs the batch size: give optimization.global_batch_size")
    return int(per_device) * int(trainer.world_size) * int(trainer.accumulate_grad_batches)


def steps_per_epoch(trainer: Any) -> int:
    """Optimizer steps per epoch (``ceil(batches / accumulation)``; sets the training data up if needed)."""
    trainer.estimated_stepping_batches  # noqa: B018 (loads the training data, which fills num_training_batches)
    batches = trainer.num_training_batches
    if not math.isfinite(batches):
        raise UserError("optimization.warmup_epochs / schedule lin0 need a training set of known length")
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


def total_steps(trainer: Any) -> int:
    """The schedule's horizon: ``max_epochs`` epochs (as the reference's ``ep * iters_per_epoch``), else
    ``max_steps``. A ``max_steps`` that stops earlier does not shorten the schedule."""
    if trainer.max_epochs is not None and trainer.max_epochs > 0:
        return steps_per_epoch(trainer) * trainer.max_epochs
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return int(trainer.max_steps)
    raise UserError("optimization.schedule lin0 needs trainer.max_epochs or trainer.max_steps")


def build_optimization(module: Any, optimizer_factory: Any, config: OptimizationConfig):
    """``configure_optimizers``'s result for ``module`` (a LightningModule with a trainer): the optimizer over
    :func:`parameter_groups`, its rate set by ``base_lr`` and, for ``lin0``, a per-step ``LambdaLR``."""
    if config.no_weight_decay is None:  # rvar's recipe, as before: a plain list (one group, the optimizer's decay)
        optimizer = optimizer_factory([p for p in module.parameters() if p.requires_grad])
    else:
        optimizer = optimizer_factory(parameter_groups(module.named_parameters(), config.no_weight_decay))
    if config.base_lr is not None:
        batch = config.global_batch_size or global_batch_size(module.trainer)
        for group in optimizer.param_groups:
            group["lr"] = scaled_lr(config.base_lr, batch)
    if config.schedule == "constant":
        return optimizer
    trainer = module.trainer
    per_epoch = steps_per_epoch(trainer)
    factor = partial(lin0_factor, total_steps=total_steps(trainer), warmup_steps=round(config.warmup_epochs * per_epoch),
                     warmup_start=config.warmup_start, flat_fraction=config.flat_fraction,
                     final_lr_fraction=config.final_lr_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
