"""``RestorerModule``: a finished checkpoint (RestoreVAR restorer or baseline) under ``rvar test | predict``.

``rvar restore`` works on files; this module runs the same models on a configured DataModule, so Lightning
handles devices, DDP and logging::

    rvar test    --config experiments/predict.yaml --model.ckpt outputs/demo/restorevar.ckpt
    rvar predict --config experiments/predict.yaml --model.ckpt outputs/demo/restorevar.ckpt

``test`` logs ``test/psnr``, ``test/ssim`` (overall and per degradation); ``predict`` returns, per batch, the
restored images with their keys, and :class:`RestoredImageWriter` writes them as PNGs.

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from rvar.inference import apply_any_size, load_restoration_model
from rvar.io import save_grid, write_image
from rvar.metrics import psnr_per_image, ssim_per_image
from rvar.nn.restorer import Restorer
from rvar.pixels import to_signed, to_unit


class RestorerModule(L.LightningModule):
    """Evaluation-only wrapper of any checkpoint ``rvar restore`` accepts.

    Args:
        ckpt: the checkpoint (kind ``restorer``, ``prior`` or ``baseline``).
        steps: sampling steps of diffusion baselines (None: their default).
        size_policy: for images not at the model's native size: ``tile`` or ``resize`` (see :mod:`rvar.inference`).
    """

    def __init__(self, ckpt: str, steps: Optional[int] = None, size_policy: str = "tile") -> None:
        super().__init__()
        self.save_hyperparameters()
        loaded = load_restoration_model(ckpt, torch.device("cpu"), "fp32", steps)
        self.net, self.native, self.description = loaded.module, loaded.native, loaded.description
        self.net.requires_grad_(False).eval()
        self.steps, self.size_policy = steps, size_policy

    def _restore_native(self, x01_B3HW: torch.Tensor) -> torch.Tensor:
        if isinstance(self.net, Restorer):
            return to_unit(self.net.restore(to_signed(x01_B3HW)).image)
        return self.net.restore_images(x01_B3HW, steps=self.steps).float().clamp(0, 1)

    @torch.no_grad()
    def forward(self, degraded01_B3HW: torch.Tensor) -> torch.Tensor:
        if self.native is None or degraded01_B3HW.shape[-2:] == (self.native, self.native):
            return self._restore_native(degraded01_B3HW)
        return torch.stack([apply_any_size(self._restore_native, img.cpu(), self.native, self.size_policy).to(self.device)
                            for img in degraded01_B3HW])

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        restored = self(batch["degraded"])
        B = restored.shape[0]
        for name, values in (("psnr", psnr_per_image(restored, batch["clean"])),
                             ("ssim", ssim_per_image(restored, batch["clean"]))):
            self.log(f"test/{name}", values.mean(), batch_size=B, sync_dist=True)
            for label in sorted(set(batch["degradation"])):
                mask = torch.tensor([d == label for d in batch["degradation"]], device=values.device)
                self.log(f"test/{name}/{label}", values[mask].mean(), batch_size=int(mask.sum()), sync_dist=True)

    def predict_step(self, batch: Dict[str, Any], batch_idx: int) -> Dict[str, Any]:
        return {"restored": self(batch["degraded"]).cpu(), "degraded": batch["degraded"].cpu(),
                "clean": batch["clean"].cpu(), "degradation": list(batch["degradation"]),
                "index": batch["index"].cpu()}

    def configure_optimizers(self):  # evaluation only
        return None


class RestoredImageWriter(BasePredictionWriter):
    """Writes ``rvar predict`` results: ``OUT/<degradation>/<key>.png`` and ``OUT/grid.png`` (first batch).

    Args:
        output_dir: destination folder (created).
        grid_images: images in the degraded | restored | clean grid (0: none).
    """

    def __init__(self, output_dir: str = "outputs/predict", grid_images: int = 8) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.grid_images = grid_images

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        restored: torch.Tensor = prediction["restored"]
        for img, key, label in zip(restored, prediction["index"].tolist(), prediction["degradation"]):
            write_image(self.output_dir / label / f"{int(key):06d}.png", img)
        if batch_idx == 0 and self.grid_images > 0 and trainer.is_global_zero:
            n = min(self.grid_images, restored.shape[0])
            rows: List[List[torch.Tensor]] = [[prediction["degraded"][i], restored[i], prediction["clean"][i]]
                                              for i in range(n)]
            save_grid(self.output_dir / "grid.png", rows, ["degraded", "restored", "clean"],
                      row_labels=prediction["degradation"][:n])
