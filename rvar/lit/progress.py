"""Progress that reads well in a log file: one line per interval instead of tqdm's carriage-return bar.

Outside a terminal (``rvar fit > fit.log``, nohup, CI, SLURM, the stage logs of ``rvar demo``) Lightning's tqdm
bar writes every refresh on one ever-growing line. :class:`LineProgressBar` is a Lightning ``ProgressBar`` that
prints plain lines instead::

    step 250 (epoch 3, 41 s, 6.1 steps/s): train/loss 0.412
    validation at step 500: val/loss 0.371, val/psnr 19.8

``rvar fit`` uses it by itself when stderr is not a terminal and ``trainer.enable_progress_bar`` is not set
(:func:`wants_line_progress`); ``--trainer.enable_progress_bar=true`` keeps tqdm, ``false`` keeps silence.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, List, Mapping, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar


def format_metrics(metrics: Mapping[str, Any], prefix: str, limit: int = 6) -> str:
    """``"train/loss 0.412, train/psnr 19.8"``: scalar metrics named ``prefix...``, loss first, at most ``limit``."""
    values: Dict[str, float] = {}
    for name, value in metrics.items():
        if not name.startswith(prefix):
            continue
        try:
            values[name] = float(value)
        except (TypeError, ValueError, RuntimeError):  # a non-scalar tensor or a string
            continue
    names = sorted(values, key=lambda n: (not n.endswith("/loss"), n.count("/"), n))[:limit]
    return ", ".join(f"{n} {values[n]:.4g}" for n in names)


class LineProgressBar(ProgressBar):
    """Plain progress lines on stderr: every ``every_n_seconds`` (and every ``every_n_steps`` when set) during
    training, one after each validation with its metrics, and one when training ends. Rank 0 only.

    Args:
        every_n_seconds: wall time between training lines (0: off).
        every_n_steps: optimizer steps between training lines (0: off).
    """

    def __init__(self, every_n_seconds: float = 30.0, every_n_steps: int = 0) -> None:
        super().__init__()
        self.every_n_seconds, self.every_n_steps = every_n_seconds, every_n_steps
        self._enabled = True
        self._started = self._last_line = 0.0
        self._last_step = -1

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, trainer: "pl.Trainer", text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(text, file=sys.stderr, flush=True)

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._started = self._last_line = time.monotonic()
        self._last_step = trainer.global_step
        limit = f"max_steps {trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else "no step limit"
        self._line(trainer, f"training from step {trainer.global_step} ({limit})")

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step, now = trainer.global_step, time.monotonic()
        if step == self._last_step:  # gradient accumulation: no optimizer step yet
            return
        due_steps = self.every_n_steps > 0 and step % self.every_n_steps == 0
        due_time = self.every_n_seconds > 0 and now - self._last_line >= self.every_n_seconds
        if not (due_steps or due_time):
            return
        elapsed = now - self._started
        rate = (step - self._last_step) / max(now - self._last_line, 1e-9) if self._last_step >= 0 else 0.0
        metrics = format_metrics(trainer.callback_metrics, "train/")
        self._line(trainer, f"step {step} (epoch {trainer.current_epoch}, {elapsed:.0f} s, {rate:.2g} steps/s)"
                            + (f": {metrics}" if metrics else ""))
        self._last_line, self._last_step = now, step

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking:
            return
        metrics = format_metrics(trainer.callback_metrics, "val/") or "no metrics"
        self._line(trainer, f"validation at step {trainer.global_step}: {metrics}")

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._line(trainer, f"training ended at step {trainer.global_step} after "
                            f"{time.monotonic() - self._started:.0f} s")

    def on_test_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._line(trainer, f"test: {format_metrics(trainer.callback_metrics, 'test/') or 'no metrics'}")


def wants_line_progress(config: Mapping[str, Any], callbacks: List[Any], stream: Optional[Any] = None) -> bool:
    """True when Lightning would draw tqdm into something that is not a terminal: stderr (``stream``) is not a
    TTY, ``enable_progress_bar`` was left unset and no progress bar callback is configured."""
    stream = stream if stream is not None else sys.stderr
    if config.get("enable_progress_bar") is not None or getattr(stream, "isatty", lambda: False)():
        return False
    given = config.get("callbacks") or []
    configured = [*(given if isinstance(given, list) else [given]), *callbacks]
    return not any(isinstance(callback, ProgressBar) for callback in configured)
