"""``ExportCheckpoint``: write a stage's result as a plain rvar checkpoint at a fixed path when fit ends.

Lightning's own checkpoints land in versioned folders (``lightning_logs/version_N/checkpoints/...``); the
next stage's YAML needs a path it can name in advance. Add this callback to a stage's ``trainer.callbacks``::

    trainer:
      callbacks:
        - class_path: rvar.lit.export.ExportCheckpoint
          init_args: {path: outputs/tiny/tokenizer.ckpt}

The file holds only the rvar format (``rvar_format``, ``kind``, ``model``, ``state_dict``, ``meta``; see
:mod:`rvar.nn.checkpoints`), no optimizer state: it is what ``tokenizer_ckpt``,
``prior_ckpt``, ``init_from`` and ``rvar restore`` read.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L

from rvar.nn.checkpoints import save_checkpoint


class ExportCheckpoint(L.Callback):
    """Save the module's rvar checkpoint to ``path`` at the end of fit (rank 0 only, written atomically).

    Args:
        path: destination file; parent folders are created.
        every_n_epochs: also export after every n-th training epoch (0: only at the end), so an interrupted
            run still leaves a usable file.
    """

    def __init__(self, path: str, every_n_epochs: int = 0) -> None:
        self.path = Path(path)
        self.every_n_epochs = int(every_n_epochs)

    def export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        meta = {**pl_module.rvar_meta(), "global_step": int(trainer.global_step), "epoch": int(trainer.current_epoch)}
        save_checkpoint(self.path, pl_module, meta)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.export(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.export(trainer, pl_module)
