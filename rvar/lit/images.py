"""Image grids of every stage (e.g. degraded | restored | clean), logged wherever the logger can take them.

* an :class:`~lightning.pytorch.loggers.MLFlowLogger`: the PNG becomes a run artifact under ``images/``;
* a TensorBoard logger: ``add_image``;
* otherwise: a PNG under ``trainer.log_dir/images`` when there is a log folder, else nothing.

Rows are (B, 3, H, W) in [0, 1]; each line of the grid is one sample, each column one row of ``rows``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torchvision.utils import make_grid, save_image


def grid_tensor(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """(3, H', W') grid: sample i on line i, the entries of ``rows`` as columns."""
    count = min(r.shape[0] for r in rows)
    tiles = [r[i].detach().float().cpu().clamp(0, 1) for i in range(count) for r in rows]
    return make_grid(torch.stack(tiles), nrow=len(rows), padding=2, pad_value=1.0)


def log_image_grid(trainer, name: str, rows: Sequence[torch.Tensor], labels: Sequence[str]) -> Optional[str]:
    """Log one grid from rank 0; returns where it went (a path or an artifact name), or None.

    Args:
        trainer: the running ``lightning.Trainer``.
        name: short name, e.g. ``val_restored``; the step is appended.
        rows: columns of the grid, each (B, 3, H, W) in [0, 1].
        labels: one caption per column (kept in the file name's companion text).
    """
    if not trainer.is_global_zero or not rows:
        return None
    grid = grid_tensor(rows)
    file_name = f"{name}_step{trainer.global_step:07d}.png"
    caption = " | ".join(labels)
    where = None
    for logger in trainer.loggers:
        kinds = {cls.__name__ for cls in type(logger).__mro__}  # subclasses too (rvar's RVARMLFlowLogger)
        if "MLFlowLogger" in kinds:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / file_name
                save_image(grid, path)
                path.with_suffix(".txt").write_text(caption + "\n")
                logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="images")
            where = f"images/{file_name}"
        elif "TensorBoardLogger" in kinds:
            logger.experiment.add_image(f"{name} ({caption})", grid, trainer.global_step)
            where = where or f"tensorboard:{name}"
    if where is None and trainer.log_dir is not None:
        folder = Path(trainer.log_dir) / "images"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / file_name)
        where = str(folder / file_name)
    return where


__all__: List[str] = ["grid_tensor", "log_image_grid"]
