"""``ReportToTrial``: the Lightning callback that connects one ``rvar fit`` to its Optuna trial.

``rvar sweep`` starts every trial as a real ``rvar fit`` subprocess and appends this callback to its
``trainer.callbacks``. After each validation (sanity checks excluded) rank 0 reports the monitored metric to the
trial, at the trainer's global step, and asks the study's pruner (the same one the sweep built, from the same
options) whether to stop. A pruned trial stops like early stopping does (``trainer.should_stop``: checkpoints
and the MLflow run end cleanly) and says so in the trial's user attribute ``rvar.pruned_step``; the sweep then
records the trial as pruned. Like Optuna's own Lightning pruning callback, but a subprocess cannot raise into
the sweep, so it leaves the verdict in the study's storage instead.

The storage URL comes from ``$RVAR_SWEEP_STORAGE``, not from an argument: arguments are logged with the run's
config, and a database URL may hold a password.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional

import lightning.pytorch as pl

STORAGE_ENV = "RVAR_SWEEP_STORAGE"
PRUNED_ATTR = "rvar.pruned_step"
LOGGED_ATTR = "rvar.logged_metrics"


class ReportToTrial(pl.Callback):
    """Report ``metric`` to trial ``trial_id`` of ``study_name`` and stop when the pruner says so.

    Args:
        study_name: the Optuna study.
        trial_id: the trial's id in the storage (not its number).
        metric: the logged metric to report, e.g. ``val/loss``.
        pruner: the sweep's pruner options (``{"name": "median", ...}``, see :func:`rvar.sweep.space.make_pruner`).
    """

    def __init__(self, study_name: str, trial_id: int, metric: str = "val/loss",
                 pruner: Optional[Dict[str, Any]] = None) -> None:
        self.study_name, self.trial_id, self.metric = study_name, int(trial_id), metric
        self.pruner = dict(pruner or {"name": "median"})
        self._trial = None
        self.pruned = False

    def _open_trial(self):
        if self._trial is None:
            import optuna

            from rvar.sweep.space import make_pruner

            url = os.environ.get(STORAGE_ENV)
            if not url:
                raise RuntimeError(f"ReportToTrial needs ${STORAGE_ENV} (rvar sweep sets it for its trials)")
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.load_study(study_name=self.study_name, storage=url, pruner=make_pruner(self.pruner))
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking or self.pruned:
            return
        prune = False
        if trainer.is_global_zero:
            prune = self._report(trainer)
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned = True
            trainer.should_stop = True

    def _report(self, trainer: "pl.Trainer") -> bool:
        trial = self._open_trial()
        value = trainer.callback_metrics.get(self.metric)
        if value is None:  # the sweep names the metric in its error when no value ever arrives
            trial.set_user_attr(LOGGED_ATTR, sorted(trainer.callback_metrics))
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        step = int(trainer.global_step)
        trial.report(value, step)
        if trial.should_prune():
            trial.set_user_attr(PRUNED_ATTR, step)
            return True
        return False
