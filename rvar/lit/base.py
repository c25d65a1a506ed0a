"""Shared plumbing of rvar's training stages: one ``_shared_step``, frozen networks, rvar-format checkpoints.

Every stage (:mod:`rvar.lit.tokenizer`, :mod:`rvar.lit.prior`, :mod:`rvar.lit.refiner`) names its networks
``tokenizer``, ``prior`` and ``refiner`` so Lightning's ``state_dict`` has the prefixes of the rvar checkpoint
format (:mod:`rvar.nn.checkpoints`), and :meth:`RVARModule.on_save_checkpoint` adds the format's top-level keys:
a Lightning ``.ckpt`` of any stage is then readable by ``load_checkpoint`` + ``build_tokenizer``/``build_restorer``.

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, List, Optional

import lightning as L
import torch
import torch.nn as nn

from rvar.errors import UserError
from rvar.nn.checkpoints import checkpoint_entries
from rvar.lit.images import log_image_grid
from rvar.lit.optim import OptimizationConfig, build_optimization
from rvar.eval.metrics import load_lpips, lpips_per_image, psnr_per_image, ssim_per_image


def restorevar_adamw(params: Iterable) -> torch.optim.Optimizer:
    """RestoreVAR's optimizer: AdamW(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05).

    The default ``optimizer`` of every stage. YAML replaces it with any optimizer, e.g.
    ``optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 2.0e-4}}``.
    """
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)


def log_per_degradation(module: L.LightningModule, key: str, values_B: torch.Tensor, degradations: List[str]) -> None:
    """``key/<degradation>`` epoch means, weighted by the number of images of each degradation."""
    for label in sorted(set(degradations)):
        mask = torch.tensor([d == label for d in degradations], device=values_B.device)
        module.log(f"{key}/{label}", values_B[mask].mean(), batch_size=int(mask.sum()), on_step=False,
                   on_epoch=True, sync_dist=True)


class RVARModule(L.LightningModule):
    """Base of the stages. Subclasses implement :meth:`_shared_step` and ``rvar_meta()`` (checkpoint meta).

    Args:
        grid_images: images per logged grid (0: no grids).
    """

    native_crops_only = True  # data crops must be the tokenizer's image size (see setup)
    optimization = OptimizationConfig()  # rvar's recipe; stages that take ``optimization`` replace it

    def __init__(self, grid_images: int = 4) -> None:
        super().__init__()
        self.grid_images = int(grid_images)
        self.frozen_modules: List[str] = []  # names of submodules kept frozen and in eval mode
        self._lpips: List[Optional[nn.Module]] = []  # a list: LPIPS is a tool, not part of the state_dict

    # ---- frozen networks ---------------------------------------------------------------------------
    def freeze_submodule(self, name: str) -> None:
        """Freeze ``name`` (dotted paths like ``tokenizer.encoder`` work): no gradients, and eval mode (dropout off,
        quantiser EMA untouched) kept through ``train()``."""
        self.get_submodule(name).requires_grad_(False).eval()
        if name not in self.frozen_modules:
            self.frozen_modules.append(name)

    def train(self, mode: bool = True):
        """Lightning calls ``train()`` when an epoch starts: frozen networks stay in eval mode."""
        super().train(mode)
        for name in self.frozen_modules:
            self.get_submodule(name).eval()
        return self

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def setup(self, stage: str) -> None:
        """Before fit or validate: the data's ``crop_size`` must be the tokenizer's image size."""
        crop, config = getattr(self.trainer.datamodule, "crop_size", None), self.tokenizer.config
        if self.native_crops_only and stage in ("fit", "validate") and crop not in (None, config.image_size):
            raise UserError(f"data crop_size {crop} is not the tokenizer's image size {config.image_size} "
                            f"(patch_nums[-1] {config.patch_nums[-1]} x downsampling {config.downsample})")

    # ---- steps --------------------------------------------------------------------------------------
    def _shared_step(self, batch: Dict[str, Any], stage: str, batch_idx: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train", batch_idx)

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val", batch_idx)

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test", batch_idx)

    def log_metric(self, name: str, value: torch.Tensor, batch_size: int, stage: str, **kwargs: Any) -> None:
        """``stage/name``, per step in training, averaged over the epoch elsewhere."""
        on_step = stage == "train"
        self.log(f"{stage}/{name}", value, batch_size=batch_size, on_step=on_step, on_epoch=not on_step,
                 prog_bar=kwargs.pop("prog_bar", False), sync_dist=not on_step, **kwargs)

    @torch.no_grad()
    def log_restoration(self, stage: str, pred01_B3HW: torch.Tensor, clean01_B3HW: torch.Tensor,
                        degradations: List[str], suffix: str = "") -> torch.Tensor:
        """PSNR, SSIM (and LPIPS when available), overall and per degradation; returns the PSNRs (B,)."""
        B = pred01_B3HW.shape[0]
        values = {"psnr": psnr_per_image(pred01_B3HW, clean01_B3HW),
                  "ssim": ssim_per_image(pred01_B3HW, clean01_B3HW)}
        lpips = self.lpips_model()
        if lpips is not None:
            values["lpips"] = lpips_per_image(lpips, pred01_B3HW, clean01_B3HW)
        for name, values_B in values.items():
            self.log_metric(f"{name}{suffix}", values_B.mean(), B, stage, prog_bar=name == "psnr")
            log_per_degradation(self, f"{stage}/{name}{suffix}", values_B, degradations)
        return values["psnr"]

    def lpips_model(self) -> Optional[nn.Module]:
        """LPIPS on this module's device, or None (one warning) when its backbone weights are absent."""
        if not self._lpips:
            self._lpips.append(load_lpips())
        model = self._lpips[0]
        return model.to(self.device) if model is not None else None

    def log_grid(self, name: str, rows: List[torch.Tensor], labels: List[str]) -> None:
        """One image grid per validation epoch: ``rows`` are (B, 3, H, W) in [0, 1], shown side by side."""
        if self.grid_images > 0 and self.trainer is not None and not self.trainer.sanity_checking:
            log_image_grid(self.trainer, name, [r[: self.grid_images] for r in rows], labels)

    # ---- optimisation -------------------------------------------------------------------------------
    def configure_optimizers(self):
        """The injected optimizer over the trainable parameters, grouped, scaled and scheduled as
        ``self.optimization`` says (:mod:`rvar.lit.optim`)."""
        return build_optimization(self, self.optimizer, self.optimization)

    # ---- checkpoints: the stage's networks describe themselves, ``rvar_meta()`` adds provenance ---------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        # dataclass configs become dicts so the file loads with torch.load(weights_only=True);
        # the constructors accept either form, so load_from_checkpoint still works
        hparams = checkpoint.get("hyper_parameters", {})
        for key, value in list(hparams.items()):
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                hparams[key] = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
        checkpoint.update(checkpoint_entries(self, {**self.rvar_meta(), "global_step": int(self.global_step)}))
