"""Every use of a private Lightning API in rvar, in one place. Checked against lightning 2.6.6.

Lightning has no public way to do these; ``tests/unit/test_lightning_compat.py`` exercises each against the
installed Lightning, so an upgrade that breaks one fails there, loudly.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional
from weakref import proxy

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger


class ModelCheckpointHooks(ModelCheckpoint):
    """``ModelCheckpoint`` whose private hooks are overridable as :meth:`write_checkpoint` (the write of
    ``_save_checkpoint``) and :meth:`find_last_checkpoints` (``_find_last_checkpoints``: ``ckpt_path="last"``)."""

    def write_checkpoint(self, trainer: "pl.Trainer", filepath: str) -> None:
        trainer.save_checkpoint(filepath, self.save_weights_only)

    def find_last_checkpoints(self, trainer: "pl.Trainer") -> set:
        return super()._find_last_checkpoints(trainer)

    def _find_last_checkpoints(self, trainer: "pl.Trainer") -> set:
        return self.find_last_checkpoints(trainer)

    def _save_checkpoint(self, trainer: "pl.Trainer", filepath: str) -> None:  # Lightning's body, but the write
        self.write_checkpoint(trainer, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


def last_checkpoints(callback: ModelCheckpoint, trainer: "pl.Trainer") -> set:
    """The ``last*.ckpt`` files of any ``ModelCheckpoint``, found as Lightning resolves ``ckpt_path="last"``."""
    return set(callback._find_last_checkpoints(trainer))


def restart_train_iterator(trainer: "pl.Trainer") -> None:
    """Restart the training data iterator Lightning created (and pre-fetched from) before ``on_train_start``."""
    iter(trainer.fit_loop._data_fetcher)


def mlflow_run_started(logger: MLFlowLogger) -> bool:
    """Whether the logger has created or reopened its run (reading ``run_id`` would start it)."""
    return bool(logger._initialized)


def mlflow_pending_run_id(logger: MLFlowLogger) -> Optional[str]:
    """The run id the logger uses or will use, without starting the run (None: it will create one)."""
    return logger._run_id


def set_mlflow_run_id(logger: MLFlowLogger, run_id: str) -> None:
    """Make a logger whose run has not started continue the existing run ``run_id``."""
    logger._run_id = run_id


@contextmanager
def mlflow_logger_without_client() -> Iterator[None]:
    """Build an ``MLFlowLogger`` inside this block and it opens no store: its ``__init__`` creates an
    ``mlflow.tracking.MlflowClient`` at once, which for a ``sqlite:///`` URI creates the database file, even on
    ranks that never log. :func:`ensure_mlflow_client` creates the client later, if that process needs one."""
    import mlflow.tracking

    real = mlflow.tracking.MlflowClient
    mlflow.tracking.MlflowClient = lambda *args, **kwargs: None
    try:
        yield
    finally:
        mlflow.tracking.MlflowClient = real


def ensure_mlflow_client(logger: MLFlowLogger) -> None:
    """Give a logger built under :func:`mlflow_logger_without_client` its client (no-op when it has one)."""
    if logger._mlflow_client is None:
        from mlflow.tracking import MlflowClient

        logger._mlflow_client = MlflowClient(logger._tracking_uri)
