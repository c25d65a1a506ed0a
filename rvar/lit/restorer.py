"""``RestorerModule``: a finished checkpoint (RestoreVAR restorer or baseline) under ``rvar test | predict``.

``rvar restore`` works on files; this module runs the same models on a configured DataModule, so Lightning
handles devices, DDP and logging::

    rvar test    --config experiments/predict.yaml --model.ckpt outputs/demo/restorevar.ckpt
    rvar predict --config experiments/predict.yaml --model.ckpt outputs/demo/restorevar.ckpt

``test`` logs ``test/psnr``, ``test/ssim`` and ``test/lpips`` when its weights are present (overall and per
degradation) and prints them per test set in the layout of RestoreVAR's Table 1, next to the paper's values;
``predict`` returns, per batch, the restored images with their keys, and :class:`RestoredImageWriter` writes them.

The evaluation protocol (:mod:`rvar.eval.protocol`) is the data's ``eval_protocol``: ``native`` (centre crops at the
model's size, float metrics) or ``restorevar`` (the paper's: 512x512 Lanczos pairs, uint8 RGB PSNR/SSIM as
scikit-image computes them, LPIPS-Alex, at most 5000 images per test set)::

    rvar test --config experiments/predict.yaml --model.ckpt C --data.init_args.eval_protocol restorevar \
        --data.init_args.test_dirs '[data/SOTS-outdoor, data/Snow100K, data/Rain13K, data/LOLv1, data/GoPro]'

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from rvar.inference import apply_any_size, baseline_fn, load_restoration_model, restorer_fn
from rvar.lit.base import log_per_degradation
from rvar.io import save_grid, write_image
from rvar.errors import UserError
from rvar.eval.protocol import TABLE1_SETS, EvalProtocol, ProtocolScorer, format_table1, table1_set
from rvar.nn.restorer import Restorer


class RestorerModule(L.LightningModule):
    """Evaluation-only wrapper of any checkpoint ``rvar restore`` accepts.

    Args:
        ckpt: the checkpoint (kind ``restorer``, ``prior`` or ``baseline``).
        steps: sampling steps of diffusion baselines (None: their default).
        size_policy: for images not at the model's native size: ``tile`` or ``resize`` (see :mod:`rvar.inference`).
        protocol: ``native`` or ``restorevar``; None (default): the DataModule's ``eval_protocol``. Naming one that
            differs from the data's is an error (the data decides how images are sized).
        table_path: also write the Table 1 layout (markdown) here after ``rvar test``.
    """

    def __init__(self, ckpt: str, steps: Optional[int] = None, size_policy: str = "tile",
                 protocol: Optional[str] = None, table_path: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        loaded = load_restoration_model(ckpt, torch.device("cpu"), "fp32", steps)
        self.net, self.native, self.description = loaded.module, loaded.native, loaded.description
        self.net.requires_grad_(False).eval()
        self.steps, self.size_policy = steps, size_policy
        if protocol is not None:
            EvalProtocol.named(protocol)  # unknown names fail here, before any data is read
        self.protocol, self.table_path = protocol, table_path
        self.scorer: Optional[ProtocolScorer] = None
        self.table_sets = (*TABLE1_SETS, "other")

    def _native_fn(self):
        """The model as an image function on native-size [0, 1] batches (see :mod:`rvar.inference`)."""
        return restorer_fn(self.net) if isinstance(self.net, Restorer) else baseline_fn(self.net, steps=self.steps)

    @torch.no_grad()
    def forward(self, degraded01_B3HW: torch.Tensor) -> torch.Tensor:
        fn = self._native_fn()
        if self.native is None or degraded01_B3HW.shape[-2:] == (self.native, self.native):
            return fn(degraded01_B3HW)
        return torch.stack([apply_any_size(fn, img.cpu(), self.native, self.size_policy).to(self.device)
                            for img in degraded01_B3HW])

    # ---- rvar test --------------------------------------------------------------------------------------
    def on_test_start(self) -> None:
        data_protocol = getattr(getattr(self.trainer, "datamodule", None), "eval_protocol", None)
        if self.protocol and data_protocol and self.protocol != data_protocol:
            raise UserError(f"model.protocol {self.protocol!r} differs from data.eval_protocol {data_protocol!r}: "
                            "set data.init_args.eval_protocol (it decides how test images are sized)")
        self.scorer = ProtocolScorer(EvalProtocol.named(self.protocol or data_protocol or "native"))
        # per Table 1 test set (+ "other"): images, PSNR sum, SSIM sum, LPIPS sum, LPIPS count
        self.table_sums = torch.zeros(len(self.table_sets), 5, dtype=torch.float64, device=self.device)

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        restored = self(batch["degraded"])
        B = restored.shape[0]
        scores = self.scorer(restored, batch["clean"])
        labels = list(batch["degradation"])
        for name, values in scores.items():
            if values is None:
                continue
            self.log(f"test/{name}", values.mean(), batch_size=B, sync_dist=True)
            log_per_degradation(self, f"test/{name}", values, labels)
        for i, label in enumerate(labels):
            row = self.table_sets.index(table1_set(label) or "other")
            lpips = scores["lpips"]
            self.table_sums[row] += torch.tensor(
                [1.0, float(scores["psnr"][i]), float(scores["ssim"][i]),
                 0.0 if lpips is None else float(lpips[i]), 0.0 if lpips is None else 1.0],
                dtype=torch.float64, device=self.table_sums.device)

    def on_test_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self.table_sums, reduce_op="sum")
        rows = [{"model": Path(self.hparams.ckpt).name, "dataset": name, "images": int(count), "psnr": psnr / count,
                 "ssim": ssim / count, "lpips": lpips / lpips_count if lpips_count else None}
                for name, (count, psnr, ssim, lpips, lpips_count) in zip(self.table_sets, sums.tolist()) if count]
        if self.trainer.is_global_zero and rows:
            table = format_table1(rows, self.scorer.protocol.name)
            print(table)
            if self.table_path:
                path = Path(self.table_path)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(table + "\n")

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
