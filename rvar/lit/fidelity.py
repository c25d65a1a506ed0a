"""``FidelityModule``: fit a restorer's learned fidelity path (:mod:`rvar.nn.fidelity`) on its own outputs.

The restorer (tokenizer, prior, refiner; all frozen) restores each training batch once; the gate then learns, from
the input, its tokenizer round trip and the restorer's output, how much of the input to pass per pixel. Its loss is
the mean over images of ``log(MSE)`` (minus the mean PSNR up to a constant, capped near 40 dB), so a clean or mildly
degraded photo the latent path would spoil counts as much as a badly degraded one: the gate learns to leave alone
what needs no restoring. Not part of the published RestoreVAR (its checkpoints have no gate); ``rvar demo`` runs it as RestoreVAR's
last stage, and as the no-prior ablation's, within their budgets.

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

import torch
from lightning.pytorch.cli import OptimizerCallable

from rvar.errors import UserError
from rvar.lit.base import RVARModule
from rvar.nn.checkpoints import build_restorer, load_checkpoint
from rvar.nn.fidelity import FidelityConfig, FidelityGate
from rvar.pixels import to_signed, to_unit


def gate_adamw(params: Iterable) -> torch.optim.Optimizer:
    """The fidelity stage's default optimizer: AdamW(lr=3e-3), no weight decay. (At lr 1e-2 with a hidden layer
    the gates saturated open within 40 s on the demo's restorer: the input everywhere, BENCHMARKS.md.)"""
    return torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)


class FidelityModule(RVARModule):
    """The fidelity stage.

    Args:
        init_from: a ``restorer`` checkpoint (with a refiner); its networks stay frozen.
        gate: the gate's sizes (:class:`~rvar.nn.fidelity.FidelityConfig`); None: the defaults.
        updates_per_batch: gate updates per restored batch (restoring is the costly part; the gate has a few
            hundred weights, and several steps on one batch cost almost nothing).
        optimizer: default :func:`gate_adamw` (AdamW lr 3e-3, no weight decay).
        val_max_batches: validation batches restored (None: all).
        grid_images: samples in the degraded | restorer | gated | clean grid per validation epoch.
    """

    def __init__(self, init_from: str, gate: Optional[FidelityConfig] = None, updates_per_batch: int = 4,
                 optimizer: OptimizerCallable = gate_adamw, val_max_batches: Optional[int] = 2,
                 grid_images: int = 4) -> None:
        super().__init__(grid_images)
        gate = FidelityConfig(**gate) if isinstance(gate, dict) else gate
        self.save_hyperparameters(ignore=["optimizer"])
        if updates_per_batch < 1:
            raise UserError(f"FidelityModule: updates_per_batch must be at least 1, got {updates_per_batch}")
        self.init_from, self.optimizer, self.val_max_batches = init_from, optimizer, val_max_batches
        self.updates_per_batch = int(updates_per_batch)
        source = load_checkpoint(init_from, kinds=("restorer",))
        restorer = build_restorer(source, init_from, require_refiner=True)
        self.decoder_meta = {"decoder": source["meta"]["decoder"]} if "decoder" in (source.get("meta") or {}) else {}
        self.tokenizer, self.prior, self.refiner = restorer.tokenizer, restorer.prior, restorer.refiner
        for name in ("tokenizer", "prior", "refiner"):
            self.freeze_submodule(name)
        self.gate = FidelityGate(gate or FidelityConfig())
        self.automatic_optimization = False  # several gate updates per restored batch

    @torch.no_grad()
    def restore(self, batch: Dict[str, Any]):
        """(input, the restorer's output, the input's round trip), each (B, 3, H, W) in [-1, 1]."""
        from rvar.nn.restorer import Restorer

        restorer = Restorer.from_networks(self.tokenizer, self.prior, self.refiner)
        x = to_signed(batch["degraded"])
        context = to_signed(batch["context"]) if restorer.uses_context and "context" in batch else None
        if restorer.uses_context and context is None:
            raise UserError("this restorer reads the whole image: set data.init_args.context_size (e.g. 256)")
        out = restorer.restore(x, context_B3HW=context, fidelity=0.0, keep_round_trip=True)  # one encoding for both
        return x.float(), out.image.float(), out.round_trip

    @staticmethod
    def loss(out_B3HW: torch.Tensor, clean_B3HW: torch.Tensor) -> torch.Tensor:
        """Mean over images of log(MSE + 4e-4), images in [-1, 1]: minus the mean PSNR up to a constant, each
        image's capped near 40 dB, so a clean sample (one in seven), which the input restores perfectly, cannot
        outweigh the rest."""
        return torch.log((out_B3HW - clean_B3HW).square().mean(dim=(1, 2, 3)) + 4e-4).mean()

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, restored, round_trip = self.restore(batch)
        clean = to_signed(batch["clean"]).float()
        opt = self.optimizers()
        for _ in range(self.updates_per_batch):
            loss = self.loss(self.gate(x, restored, round_trip), clean)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        self.log_metric("loss", loss.detach(), x.shape[0], "train", prog_bar=True)
        return loss.detach()

    def _shared_step(self, batch: Dict[str, Any], stage: str, batch_idx: int = 0) -> Optional[torch.Tensor]:
        if self.val_max_batches is not None and batch_idx >= self.val_max_batches:
            return None
        x, restored, round_trip = self.restore(batch)
        with torch.no_grad():
            gated = self.gate(x, restored, round_trip).clamp(-1, 1)
            clean = to_signed(batch["clean"]).float()
            loss = self.loss(gated, clean)
            B = x.shape[0]
            self.log_metric("loss", loss, B, stage)
            degradations = list(batch["degradation"])
            self.log_restoration(stage, to_unit(restored), batch["clean"], degradations, suffix="_before")
            self.log_restoration(stage, to_unit(gated), batch["clean"], degradations, suffix="_after")
            a, b = self.gate.gates(x, restored, round_trip)
            self.log_metric("gate_a", a.mean(), B, stage)
            self.log_metric("gate_b", b.mean(), B, stage)
            if batch_idx == 0:
                self.log_grid(f"{stage}_fidelity", [batch["degraded"], to_unit(restored), to_unit(gated), batch["clean"]],
                              ["degraded", "restorer", "with the gate", "clean"])
        return loss

    def configure_optimizers(self):
        return self.optimizer(self.gate.parameters())

    def rvar_meta(self) -> Dict[str, Any]:
        return {"stage": "fidelity", "init_from": self.init_from, **self.decoder_meta}  # a fine-tuned decoder stays so
