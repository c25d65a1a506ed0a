"""What every baseline LightningModule shares: the training/validation step, metrics, the optimizer and the
rvar checkpoint keys, so ``rvar restore``, ``rvar compare`` and the demo can treat every model alike.

The common restore interface of a baseline module:

* ``restore_images(degraded_B3HW_01, steps=None) -> restored_B3HW_01`` (float, [0, 1]);
* ``native_size``: the side the model works at (int), or None for a fully convolutional network;
* ``sampling_steps``: network evaluations per image (1 for a regression network).

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable

from rvar.eval.metrics import psnr_per_image, ssim_per_image
from rvar.nn import count_parameters
from rvar.nn.checkpoints import checkpoint_entries


class BaselineModule(L.LightningModule):
    """Base class of the registered baselines (``rvar plugins --kind baselines``).

    Subclasses set ``name`` (the registry name), implement :meth:`training_loss`, :meth:`restore_images` and
    :meth:`init_args` (the constructor arguments, plain values only, that rebuild the module without any file:
    a checkpoint's ``model.init_args``, see :mod:`rvar.nn.checkpoints`).
    """

    name: str = ""
    native_size: Optional[int] = None

    def __init__(self, optimizer: Optional[OptimizerCallable] = None) -> None:
        super().__init__()
        self.optimizer = optimizer

    # ---- the restore interface -----------------------------------------------------------------------
    @property
    def sampling_steps(self) -> int:
        return 1

    @property
    def uses_context(self) -> bool:
        """True when :meth:`restore_images` also takes ``context``, the whole images that its inputs are tiles
        of (resized to the native size; see :mod:`rvar.inference`)."""
        return False

    def restore_images(self, degraded_B3HW_01: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
        raise NotImplementedError

    def training_loss(self, batch: Dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def init_args(self) -> Dict[str, Any]:
        raise NotImplementedError

    # ---- Lightning -----------------------------------------------------------------------------------
    def _shared_step(self, batch: Dict[str, Any], stage: str) -> Optional[torch.Tensor]:
        batch_size = batch["degraded"].shape[0]
        if stage == "train":
            loss = self.training_loss(batch)
            self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
            return loss
        with torch.no_grad():
            self.log(f"{stage}/loss", self.training_loss(batch), batch_size=batch_size, sync_dist=True)
        whole = {"context": batch["context"]} if self.uses_context and "context" in batch else {}
        restored = self.restore_images(batch["degraded"], **whole)
        clean = batch["clean"].float()
        self.log(f"{stage}/psnr", psnr_per_image(restored, clean).mean(), prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        self.log(f"{stage}/ssim", ssim_per_image(restored, clean).mean(), batch_size=batch_size, sync_dist=True)
        return None

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.restore_images(batch["degraded"])

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer is None:
            return torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
        return self.optimizer(params)

    def rvar_meta(self) -> Dict[str, Any]:
        """The ``meta`` of its rvar checkpoint (:class:`rvar.lit.export.ExportCheckpoint`, ``on_save_checkpoint``)."""
        return {"stage": self.name, "parameters": count_parameters(self)}

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """The rvar checkpoint keys next to Lightning's, for :func:`rvar.inference.load_baseline`."""
        checkpoint.update(checkpoint_entries(self, {**self.rvar_meta(), "trainer_step": int(self.global_step)}))
