"""Callbacks that make rvar runs last: atomic resumable checkpoints, exact data position on resume, a guard
against non-finite losses, a final validation, and checkpoints logged to MLflow.

All are in ``trainer.callbacks`` of ``lightning_config.yaml``:

* :class:`AtomicModelCheckpoint`: Lightning's ``ModelCheckpoint`` writing ``.name.partial`` then renaming it
  (a ``kill -9`` mid-write never leaves a truncated ``last.ckpt``); folder ``checkpoints/`` under
  ``trainer.default_root_dir`` unless ``dirpath`` is given, so ``--ckpt_path last`` finds it.
* :class:`ResumableDataPosition`: a mid-epoch resume continues with the very next batch of the interrupted
  epoch (Lightning alone restarts the epoch's data order for a plain ``DataLoader``).
* :class:`NonFiniteLossGuard`: stops on a NaN/inf training loss, before that step can be checkpointed,
  with a one-line message naming the step and the last good checkpoint.
* :class:`ValidateAtEnd`: a run that reaches ``max_steps`` between scheduled validations validates once
  more (so even a 4-step run has validation metrics and an image grid).
* :class:`ArtifactCheckpoints`: stores the MLflow run id in every checkpoint (``--ckpt_path`` then continues
  that run) and uploads the best and last checkpoints as artifacts when fit ends (rank 0).
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterator, Mapping, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import CombinedLoader, rank_zero_info
from torch.utils.data import Sampler

from rvar.errors import UserError
from rvar.lit.lightning_compat import ModelCheckpointHooks, restart_train_iterator
from rvar.lit.tracking import RUN_ID_KEY, mlflow_loggers

POSITION_KEY = "rvar_data_position"


# 1. checkpoints -----------------------------------------------------------------------------------------------
class AtomicModelCheckpoint(ModelCheckpointHooks):
    """``ModelCheckpoint`` with atomic writes and a predictable folder.

    Args:
        dirpath: checkpoint folder; None: ``<trainer.default_root_dir>/checkpoints``.
        filename: Lightning's file-name template.
        monitor / mode: the metric ranking the kept checkpoints (None: the newest are kept).
        save_last: keep ``last.ckpt`` (what ``--ckpt_path last`` loads).
        save_top_k: checkpoints kept besides ``last.ckpt`` (0: none).
        every_n_train_steps: write every N optimizer steps (the resume interval).
        every_n_epochs: write every N epochs (after validation when it runs).
        save_weights_only: leave optimizer/scheduler/loop state out (such files cannot resume a run).
        save_on_train_epoch_end: Lightning's option of the same name.
    """

    def __init__(self, dirpath: Optional[str] = None, filename: Optional[str] = None,
                 monitor: Optional[str] = None, mode: str = "min", save_last: bool = True, save_top_k: int = 1,
                 every_n_train_steps: Optional[int] = None, every_n_epochs: Optional[int] = None,
                 save_weights_only: bool = False, save_on_train_epoch_end: Optional[bool] = None) -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=monitor, mode=mode, save_last=save_last,
                         save_top_k=save_top_k, every_n_train_steps=every_n_train_steps,
                         every_n_epochs=every_n_epochs, save_weights_only=save_weights_only,
                         save_on_train_epoch_end=save_on_train_epoch_end)

    def resolve_dirpath(self, trainer: "pl.Trainer") -> str:
        """Fix the folder from ``default_root_dir`` without asking the logger (which would open a run)."""
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        return self.dirpath

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self.resolve_dirpath(trainer)
        super().setup(trainer, pl_module, stage)

    def find_last_checkpoints(self, trainer: "pl.Trainer") -> set:
        self.resolve_dirpath(trainer)
        return super().find_last_checkpoints(trainer)

    def write_checkpoint(self, trainer: "pl.Trainer", filepath: str) -> None:
        folder, name = os.path.split(filepath)
        partial = os.path.join(folder, f".{name}.partial")
        trainer.save_checkpoint(partial, self.save_weights_only)  # rank 0 writes, every rank waits
        if trainer.is_global_zero:
            os.replace(partial, filepath)  # atomic on one file system
        trainer.strategy.barrier("rvar_atomic_checkpoint")


# 2. data position on resume -----------------------------------------------------------------------------------
class _SkipFirst(Sampler[int]):
    """Wraps a sampler; its next iteration drops the first ``count`` indices, later ones pass through."""

    def __init__(self, sampler: Sampler, count: int) -> None:
        self.sampler, self.count = sampler, int(count)

    def __iter__(self) -> Iterator[int]:
        count, self.count = self.count, 0
        for position, index in enumerate(iter(self.sampler)):
            if position >= count:
                yield index

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class ResumableDataPosition(Callback):
    """Resume mid-epoch at the next unseen batch, with the interrupted epoch's order.

    Every checkpoint records ``(epoch, batches done in the epoch)``. On resume, before the first batch, the
    training loader's sampler (after Lightning's per-rank split) is set to that epoch and skips the indices of
    the batches already done, without loading them. Samplers whose order is a function of (seed, epoch), like
    rvar's ``EpochSampler`` and Lightning's distributed wrapper, then give exactly the uninterrupted sequence.
    """

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, int]] = None

    def on_save_checkpoint(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                           checkpoint: Dict[str, Any]) -> None:
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        checkpoint[POSITION_KEY] = {"epoch": int(trainer.current_epoch), "batches": int(progress.processed)}

    def on_load_checkpoint(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                           checkpoint: Dict[str, Any]) -> None:
        self._pending = checkpoint.get(POSITION_KEY)

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        pending, self._pending = self._pending, None
        if not pending or pending["epoch"] != trainer.current_epoch:
            return  # a fresh run, or the checkpoint closed its epoch
        done = int(pending["batches"])
        if done <= 0 or done >= trainer.num_training_batches:  # done >= inf is False: infinite epochs resume
            return
        loaders = trainer.train_dataloader
        for loader in CombinedLoader(loaders).flattened if loaders is not None else []:
            batch_sampler = getattr(loader, "batch_sampler", None)
            if batch_sampler is None or not hasattr(batch_sampler, "sampler"):
                rank_zero_info("rvar: the training loader has no batch sampler; resuming from its epoch start")
                return
            sampler = batch_sampler.sampler
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(trainer.current_epoch)
            batch_sampler.sampler = _SkipFirst(sampler, done * batch_sampler.batch_size)
        # Lightning created (and pre-fetched from) the iterator before this hook: start it again
        restart_train_iterator(trainer)
        rank_zero_info(f"rvar: resuming epoch {trainer.current_epoch} after its first {done} batches")


# 3. failure and the end of a run ------------------------------------------------------------------------------
class NonFiniteLossError(UserError):
    """A training loss became NaN or infinite; the run stopped before checkpointing that step."""


class NonFiniteLossGuard(Callback):
    """Stop at the first non-finite training loss, on every rank at once, before it is checkpointed.

    The check runs in ``on_train_batch_end`` ahead of the checkpoint callbacks (Lightning calls those last),
    so ``last.ckpt`` stays the last good state. The error is one line (``rvar: error: ...``, exit 2).
    """

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        bad = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else math.nan
        last = next((cb.last_model_path or cb.best_model_path for cb in trainer.checkpoint_callbacks
                     if isinstance(cb, ModelCheckpoint) and (cb.last_model_path or cb.best_model_path)), "")
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"non-finite training loss ({value if bad else 'on another rank'}) at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}, batch {batch_idx}); stopped before checkpointing it, {kept}; "
            f"try a lower learning rate or trainer.gradient_clip_val")


class ValidateAtEnd(Callback):
    """Make the batch that reaches ``max_steps`` validate (Lightning validates a stopping run), so a run
    that ends between scheduled validations still gets validation metrics and its image grid."""

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if 0 < trainer.max_steps <= trainer.global_step and trainer.enable_validation:
            trainer.should_stop = True


class ArtifactCheckpoints(Callback):
    """Keep the MLflow run id in every checkpoint; upload the best and last checkpoints when fit ends.

    Args:
        upload: upload checkpoints as artifacts (``checkpoints/``) at fit end; False: only the run id is kept.
    """

    def __init__(self, upload: bool = True) -> None:
        self.upload = upload

    def on_save_checkpoint(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                           checkpoint: Dict[str, Any]) -> None:
        loggers = mlflow_loggers(trainer)
        if loggers and trainer.is_global_zero:
            checkpoint[RUN_ID_KEY] = loggers[0].run_id

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        loggers = mlflow_loggers(trainer)
        if not (self.upload and loggers and trainer.is_global_zero):
            return
        paths = [path for callback in trainer.checkpoint_callbacks if isinstance(callback, ModelCheckpoint)
                 for path in (callback.best_model_path, callback.last_model_path)]
        for path in dict.fromkeys(p for p in paths if p and os.path.isfile(p)):
            for logger in loggers:
                logger.experiment.log_artifact(logger.run_id, path, artifact_path="checkpoints")
