"""``FidelityModule``: fit a restorer's learned fidelity path (:mod:`rvar.nn.fidelity`) on its own outputs.

The restorer (tokenizer, prior, refiner; all frozen) restores each training batch once, tile by tile as
``rvar restore`` does; the gate then learns, from the input, its tokenizer round trip and the restorer's output, how
much of the input to pass per pixel. With ``image_stats`` (the default) the samples must be whole images (data
``crop_size`` 256, no ``context_size``): the restored regions go into a small buffer and each step makes several
gate updates on random draws from it, since restoring is the costly part and the gate has a few dozen weights.
With ``candidates`` > 1 several gates are fitted side by side on the same draws from different random starts, and
the stage keeps the one whose loss on its buffer of whole images is lowest when training ends: one fit in several
settles where it gives up a whole degradation (BENCHMARKS.md, eighth round). Its loss is the mean over images of
``log(MSE)`` (minus the mean PSNR up to a constant, capped at ``psnr_cap``), so a
clean or mildly degraded photo the latent path would spoil counts as much as a badly degraded one: the gate learns
to leave alone what needs no restoring. Not part of the published RestoreVAR (its checkpoints have no gate);
``rvar demo`` runs it as RestoreVAR's last stage, and as the no-prior ablation's, within their budgets.

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

import random
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info

from rvar.errors import UserError
from rvar.lit.base import RVARModule
from rvar.nn.checkpoints import build_restorer, load_checkpoint
from rvar.nn.fidelity import (FidelityConfig, FidelityGate, blend, colour_terms, fit_colour, fit_switch,
                              switch_features)
from rvar.pixels import to_signed, to_unit

Sample = Tuple[torch.Tensor, torch.Tensor]  # the gate statistics (F, H, W); x - T, T - R, clean - R (9, H, W)


def gate_adamw(params: Iterable) -> torch.optim.Optimizer:
    """The fidelity stage's default optimizer: AdamW(lr=1e-2), no weight decay. A linear gate on whole-image
    statistics has a few dozen weights and a demo gives it a few hundred updates. Chosen on the validation photos
    (BENCHMARKS.md): at 2e-2 the gates saturate open within 15 s (the input everywhere, even under low light); at
    5e-3 and 3e-3 they leave more of the harm of JPEG and blur."""
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)


class FidelityModule(RVARModule):
    """The fidelity stage.

    Args:
        init_from: a ``restorer`` checkpoint (with a refiner); its networks stay frozen.
        gate: the gate's sizes (:class:`~rvar.nn.fidelity.FidelityConfig`); None: the defaults, with whole-image
            statistics, standardised. A standardising gate makes no update until the buffer holds ``update_batch``
            images; their statistics set its standardisation, once.
        updates_per_batch: gate updates per restored batch.
        update_batch: images per gate update, drawn from the buffer of restored samples.
        buffer_size: restored samples kept (the oldest go first): the gate's statistics of each whole image and the
            differences it blends, float16 on the CPU, about 3 MB per 256 px image.
        update_crop: side of the random crops an update sees (the whole-image statistics are computed first, so a
            crop keeps them; 128 px crops of 256 px images hold a quarter of the pixels).
        tile_overlap: overlap of the restore tiles in pixels (``rvar restore`` blends tiles overlapping by half a
            tile; 0 restores a 256 px image in 16 tiles instead of 49, 3x faster).
        psnr_cap: the loss counts each image's PSNR up to this many dB. It sets how much the gate protects clean
            and mildly degraded photos against how much restoration it keeps: on the validation photos, 40 (the
            default) kept every degradation within 0.2 dB at +1.5-1.7 dB overall; 34 gave +2.3 with JPEG and blur
            losing 0.6-0.9; 30 gave +2.5 with blur losing 1.1 (BENCHMARKS.md).
        candidates: gates fitted side by side (the same crops for each, different random starts of the hidden
            layer, so they differ only with ``gate.hidden`` > 0; one optimizer,
            each gate's loss its own), of which the stage keeps, at the end of training, the one with the lowest
            loss on the whole images in its buffer (averaged over processes). 1: one gate, as before. A fit from
            96 images sometimes gives up a whole degradation (the input kept for every low-light photo); on one
            demo's restorer, 6 draws, the best of 4 raised the worst draw from +2.18 to +2.35 dB and the mean from
            +2.45 to +2.66 (BENCHMARKS.md, eighth round).
        restore_precision: precision of the frozen restorer's restorations (``rvar restore --precision``: fp32,
            bf16 or auto, bf16 where the device has it natively). The gate trains in fp32 either way. On a CPU with
            native bf16 the restorations take 2.4x less time and match fp32's to 57 dB
            (``benchmarks/restore_precision.py``), so the stage's seconds restore more images.
        restore_images: restore only the first this many images of each batch (None: all). With a switch that
            reads the input (``gate.switch_inputs: input``), every image of the batch still teaches its classifier,
            which needs only the degraded image and its label: a larger data batch then buys it many more images for
            little time (degrading and describing an image costs far less than restoring it).
        switch_pool: unrestored images kept for the switch's classifier (the oldest go first).
        optimizer: default :func:`gate_adamw` (AdamW lr 1e-2, no weight decay).
        val_max_batches: validation batches restored (None: all).
        grid_images: samples in the degraded | restorer | gated | clean grid per validation epoch.
    """

    def __init__(self, init_from: str, gate: Optional[FidelityConfig] = None, updates_per_batch: int = 4,
                 update_batch: int = 16, buffer_size: int = 128, update_crop: int = 128, tile_overlap: int = 0,
                 psnr_cap: float = 40.0, candidates: int = 1, restore_precision: str = "fp32",
                 restore_images: Optional[int] = None, switch_pool: int = 4096,
                 optimizer: OptimizerCallable = gate_adamw, val_max_batches: Optional[int] = 2,
                 grid_images: int = 4) -> None:
        super().__init__(grid_images)
        gate = FidelityConfig(**gate) if isinstance(gate, dict) else gate
        self.save_hyperparameters(ignore=["optimizer"])
        for name, value in (("updates_per_batch", updates_per_batch), ("update_batch", update_batch),
                            ("buffer_size", buffer_size), ("update_crop", update_crop), ("candidates", candidates),
                            ("restore_images", 1 if restore_images is None else restore_images),
                            ("switch_pool", switch_pool)):
            if value < 1:
                raise UserError(f"FidelityModule: {name} must be at least 1, got {value}")
        if tile_overlap < 0:
            raise UserError(f"FidelityModule: tile_overlap must be 0 or more, got {tile_overlap}")
        if not 10.0 <= psnr_cap <= 100.0:
            raise UserError(f"FidelityModule: psnr_cap must be between 10 and 100 dB, got {psnr_cap}")
        self.init_from, self.optimizer, self.val_max_batches = init_from, optimizer, val_max_batches
        self.updates_per_batch, self.update_batch = int(updates_per_batch), int(update_batch)
        self.buffer_size, self.tile_overlap, self.update_crop = int(buffer_size), int(tile_overlap), int(update_crop)
        self.psnr_cap = float(psnr_cap)
        self.restore_images, self.switch_pool = restore_images, int(switch_pool)
        from rvar.inference import PRECISIONS

        if restore_precision not in PRECISIONS:
            raise UserError(f"FidelityModule: restore_precision {restore_precision!r} is not one of "
                            f"{', '.join(PRECISIONS)}")
        self.restore_precision = restore_precision
        source = load_checkpoint(init_from, kinds=("restorer",))
        restorer = build_restorer(source, init_from, require_refiner=True)
        self.decoder_meta = {"decoder": source["meta"]["decoder"]} if "decoder" in (source.get("meta") or {}) else {}
        self.tokenizer, self.prior, self.refiner = restorer.tokenizer, restorer.prior, restorer.refiner
        for name in ("tokenizer", "prior", "refiner"):
            self.freeze_submodule(name)
        self.gate = FidelityGate(gate or FidelityConfig(image_stats=True, standardise=True))
        # the other candidates (the first is self.gate, which the stage exports); each its own random start
        self.rivals = torch.nn.ModuleList(FidelityGate(self.gate.config) for _ in range(int(candidates) - 1))
        for gate in self.candidates():  # an image switch is fitted at the end, not by the updates (nor seen by DDP)
            if gate.config.switch_classes is not None:
                gate.switch_classifier.requires_grad_(False)
                gate.switch_trust.requires_grad_(False)
                if gate.config.switch_keep:
                    gate.switch_keep.requires_grad_(False)
                if gate.config.colour:
                    gate.switch_colour.requires_grad_(False)
        self.validated = 0  # the candidate validation uses: the one the stage would keep (on_validation_epoch_start)
        self.buffer: List[Sample] = []
        self.buffer_labels: List[str] = []  # each buffered image's degradation label (the image switch's classes)
        self.buffer_inputs: List[torch.Tensor] = []  # each buffered image's switch_features (switch_inputs: input)
        self.buffer_x: List[torch.Tensor] = []  # each buffered image's input (only with the colour path)
        self.pool: List[Tuple[torch.Tensor, str]] = []  # (switch_features, label) of images not restored
        self.automatic_optimization = False  # several gate updates per restored batch
        self.native_crops_only = False  # whole images of any size, restored tile by tile

    @torch.no_grad()
    def restore(self, batch: Dict[str, Any]):
        """(input, the restorer's output, the input's round trip), each (B, 3, H, W) in [-1, 1]: whole images
        restored tile by tile as ``rvar restore`` does (tiles with the image as context)."""
        from rvar.inference import resolve_precision, restorer_fn, run_tiled
        from rvar.nn.restorer import Restorer

        if "context" in batch:
            raise UserError("the fidelity stage restores whole images tile by tile itself: remove "
                            "data.init_args.context_size and set data.init_args.crop_size to the image side (e.g. 256)")
        restorer = Restorer.from_networks(self.tokenizer, self.prior, self.refiner, self.gate)
        precision = resolve_precision(self.restore_precision, self.device)
        fn = restorer_fn(restorer, self.device, precision, fidelity=1.0)  # restored tiles and round trips, not gated
        images = batch["degraded"][:self.restore_images]
        both = torch.stack([run_tiled(fn, img.float().cpu(), restorer.image_size, batch_size=16,
                                      overlap=self.tile_overlap) for img in images]).to(self.device)
        return to_signed(images).float(), to_signed(both[:, :3]), to_signed(both[:, 3:])

    def loss(self, out_B3HW: torch.Tensor, clean_B3HW: torch.Tensor) -> torch.Tensor:
        """Mean over images of log(MSE + floor), images in [-1, 1]: minus the mean PSNR up to a constant, each
        image's capped near ``psnr_cap`` dB, so a clean sample (one in seven), which the input restores perfectly,
        cannot outweigh the rest without bound."""
        return self._log_mse((out_B3HW - clean_B3HW).square().mean(dim=(1, 2, 3)))

    def _log_mse(self, mse_B: torch.Tensor) -> torch.Tensor:
        """Mean over the first axis (images) of log(MSE + floor): a scalar for (B,), one value per column for
        (B, candidates)."""
        floor = 4.0 * 10.0 ** (-self.psnr_cap / 10.0)  # the MSE of [-1, 1] images at psnr_cap dB
        return torch.log(mse_B + floor).mean(0)

    @property
    def reads_input(self) -> bool:
        """Whether the gate's switch reads the input alone (``switch_inputs: input``)."""
        return self.gate.config.switch_classes is not None and self.gate.config.switch_inputs == "input"

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, restored, round_trip = self.restore(batch)
        k = x.shape[0]
        clean = to_signed(batch["clean"][:k]).float()
        if self.reads_input:  # every image teaches the switch's classifier; the unrestored ones go to the pool
            with torch.no_grad():
                inputs = switch_features(to_signed(batch["degraded"]).float(), self.gate.config.switch_highlights).cpu()
            self.buffer_inputs += list(inputs[:k])
            self.pool += [(f, str(label)) for f, label in zip(inputs[k:], list(batch["degradation"])[k:])]
            del self.pool[:max(len(self.pool) - self.switch_pool, 0)]
            del self.buffer_inputs[:max(len(self.buffer_inputs) - self.buffer_size, 0)]
        with torch.no_grad():  # what an update needs: the gate's statistics and the three differences it blends
            stats = self.gate.statistics(x, restored, round_trip)
            diffs = torch.cat([x - round_trip, round_trip - restored, clean - restored], dim=1)
        for s, d in zip(stats, diffs):
            self.buffer.append((s.to("cpu", torch.float16), d.to("cpu", torch.float16)))
        self.buffer_labels += [str(label) for label in list(batch["degradation"])[:k]]
        if self.gate.config.colour:
            self.buffer_x += [img.to("cpu", torch.float16) for img in x]
            del self.buffer_x[:max(len(self.buffer_x) - self.buffer_size, 0)]
        del self.buffer[:max(len(self.buffer) - self.buffer_size, 0)]
        del self.buffer_labels[:max(len(self.buffer_labels) - self.buffer_size, 0)]
        if self.gate.config.standardise and not self.standardised():
            if len(self.buffer) < min(self.update_batch, self.buffer_size):
                return None  # no updates until the statistics of update_batch images set the standardisation
            statistics = torch.stack([s for s, _ in self.buffer]).to(self.device)
            for gate in self.candidates():
                gate.set_standardisation(statistics)
        opt = self.optimizers()
        for _ in range(self.updates_per_batch):
            crops = self.crops(random.sample(self.buffer, min(self.update_batch, len(self.buffer))))
            losses = self.candidate_losses(crops)
            opt.zero_grad()
            self.manual_backward(losses.sum())  # each gate's parameters get its own loss's gradient
            opt.step()
        loss = losses[0].detach()
        self.log_metric("loss", loss, x.shape[0], "train", prog_bar=True)
        return loss

    def candidates(self) -> List[FidelityGate]:
        """The gates being fitted: :attr:`gate` first, then the rivals."""
        return [self.gate, *self.rivals]

    @torch.no_grad()
    def buffer_losses(self) -> torch.Tensor:
        """(candidates,): each candidate's :meth:`loss` on the whole images in the buffer."""
        totals = torch.zeros(len(self.candidates()), device=self.device)
        by_size: Dict[Tuple[int, ...], List[Sample]] = {}
        for sample in self.buffer:  # images of one size stack
            by_size.setdefault(tuple(sample[0].shape), []).append(sample)
        for same in by_size.values():
            for start in range(0, len(same), 16):
                chunk = same[start:start + 16]
                both = torch.stack([torch.cat([s, d]) for s, d in chunk]).to(self.device).float()
                totals += self.candidate_losses(both) * len(chunk)
        return totals / max(len(self.buffer), 1)

    def ranked_losses(self) -> Optional[torch.Tensor]:
        """:meth:`buffer_losses` averaged over processes, or None: one gate, or no update made yet."""
        if not self.rivals or not self.buffer or (self.gate.config.standardise and not self.standardised()):
            return None
        losses = self.buffer_losses()
        return self.trainer.strategy.reduce(losses, reduce_op="mean") if self.trainer.world_size > 1 else losses

    def on_validation_epoch_start(self) -> None:
        """Validate the candidate the stage would keep now (the first before any update), so the logged
        validation metrics are those of the gate that would be exported."""
        losses = self.ranked_losses()
        self.validated = 0 if losses is None else int(losses.argmin())

    def on_train_end(self) -> None:
        """Keep the candidate with the lowest loss on the buffer (before the export, which runs at fit end)."""
        losses = self.ranked_losses()
        if losses is None:
            self.fit_image_switch()
            return
        best = self.chosen_candidate = int(losses.argmin())
        if best:
            self.gate.load_state_dict(self.candidates()[best].state_dict())
        self.validated = 0
        rank_zero_info(f"fidelity: kept gate {best + 1} of {len(losses)} (loss on the buffer's {len(self.buffer)} "
                       f"images: {', '.join(f'{float(v):.3f}' for v in losses)})")
        self.fit_image_switch()

    def fit_image_switch(self) -> Optional[Dict[str, Any]]:
        """Fit the kept gate's image-level switch (``FidelityConfig.switch_classes``) on the whole images in the
        buffer (gathered from every process), with the gates fixed; None when the gate has no switch or the stage
        made no update."""
        classes = self.gate.config.switch_classes
        if classes is None or not self.buffer or not self.standardised():
            return None
        self.gate.switch_fitted.fill_(0.0)  # the gates alone, as fitted
        rows = []

        def index(label: str) -> torch.Tensor:
            return torch.tensor([float(classes.index(label)) if label in classes else -1.0], device=self.device)

        with torch.no_grad():
            for i, ((s, d), label) in enumerate(zip(self.buffer, self.buffer_labels)):
                stats, diffs = s[None].to(self.device).float(), d[None].to(self.device).float()
                a, b = self.gate.gates_from(stats)
                correction, wanted = blend(a, diffs[:, :3]) + blend(b, diffs[:, 3:6]), diffs[:, 6:]
                terms = [(correction * correction).mean(), (correction * wanted).mean(), (wanted * wanted).mean()]
                if self.gate.config.switch_keep:  # u = x - R, what the trust in the input moves towards
                    u = diffs[:, :3] + diffs[:, 3:6]
                    terms += [(u * u).mean(), (correction * u).mean(), (u * wanted).mean()]
                terms = torch.stack(terms)
                reads = self.buffer_inputs[i].to(self.device) if self.reads_input else self.gate.image_features(stats)[0]
                rows.append(torch.cat([reads, index(label), terms]))
            nan = torch.full((len(terms),), float("nan"), device=self.device)
            rows += [torch.cat([f.to(self.device), index(label), nan]) for f, label in self.pool]  # classifier only
        table = self.gathered(torch.stack(rows))
        n = table.shape[1] - 1 - len(terms)
        if self.reads_input:  # the classifier's inputs standardised on every image it learns from
            with torch.no_grad():
                self.gate.switch_mean.copy_(table[:, :n].mean(0))
                self.gate.switch_std.copy_(table[:, :n].std(0).clamp_min(1e-3))
                table[:, :n] = (table[:, :n] - self.gate.switch_mean) / self.gate.switch_std
        floor = 4.0 * 10.0 ** (-self.psnr_cap / 10.0)
        with torch.enable_grad():
            summary = fit_switch(self.gate, table[:, :n], table[:, n].long(), table[:, n + 1:], floor)
        trust = ", ".join(f"{c} {t:.2f}" for c, t in summary["trust"].items())
        keep = ", ".join(f"{c} {k:.2f}" for c, k in summary.get("keep", {}).items())
        rank_zero_info(f"fidelity: image switch fitted on {len(table)} images, {int(summary['restored'])} of them "
                       f"restored (classifier accuracy "
                       f"{summary['accuracy']:.2f}); trust in the restorer per label: {trust}"
                       + (f"; in the input: {keep}" if keep else ""))
        if self.gate.config.colour:
            summary["colour"] = self.fit_colour_path(floor)
        return summary

    def gathered(self, table: torch.Tensor) -> torch.Tensor:
        """The rows of every process's ``table`` (the same on each), or ``table`` itself on one process."""
        if self.trainer is None or self.trainer.world_size <= 1:
            return table
        sizes = self.trainer.strategy.all_gather(torch.tensor([len(table)], device=self.device))
        padded = table.new_full((int(sizes.max()), table.shape[1]), float("inf"))  # inf marks the padding
        padded[:len(table)] = table
        gathered = self.trainer.strategy.all_gather(padded).reshape(-1, table.shape[1])
        return gathered[~gathered[:, -1].isinf()]

    def fit_colour_path(self, floor: float) -> Dict[str, float]:
        """Fit the kept gate's share of the input's colour per label (``FidelityConfig.colour``) on the buffer's
        whole images, gated with the switch as just fitted (:func:`rvar.nn.fidelity.fit_colour`)."""
        rows = []
        with torch.no_grad():
            for (s, d), x in zip(self.buffer, self.buffer_x):
                stats, diffs = s[None].to(self.device).float(), d[None].to(self.device).float()
                x = x[None].to(self.device).float()
                round_trip = x - diffs[:, :3]
                restored = round_trip - diffs[:, 3:6]
                a, b = self.gate.gates_from(stats, x)
                out = (restored + blend(a, diffs[:, :3]) + blend(b, diffs[:, 3:6])).clamp(-1, 1)
                probabilities = self.gate.switch_probabilities(stats, x)
                rows.append(torch.cat([probabilities[0], colour_terms(x, out, restored + diffs[:, 6:])[0]]))
        table = self.gathered(torch.stack(rows))
        shares = fit_colour(self.gate, table[:, :-3], table[:, -3:], floor)
        rank_zero_info(f"fidelity: the input's colour fitted on {len(table)} restored images; its share per label: "
                       + ", ".join(f"{c} {w:.2f}" for c, w in shares.items()))
        return shares

    def standardised(self) -> bool:
        """Whether the gate's standardisation is set (a fresh gate's is the identity: mean 0, spread 1 exactly,
        which statistics of real images never give; a resumed stage keeps the one it set)."""
        g = self.gate
        return not (bool((g.feature_mean == 0).all()) and bool((g.feature_std == 1).all()))

    def loss_on(self, draw: List[Sample]) -> torch.Tensor:
        """:meth:`loss` of the gated output on random ``update_crop`` crops of buffered samples (the statistics
        were computed on the whole images, so a crop keeps their whole-image values)."""
        return self.gated_loss(self.gate, self.crops(draw))

    def crops(self, draw: List[Sample]) -> torch.Tensor:
        """(len(draw), features + 9, side, side): a random ``update_crop`` crop of each sample, statistics and
        differences together, on the module's device."""
        side = min([self.update_crop] + [min(s.shape[-2:]) for s, _ in draw])
        crops = []
        for s, d in draw:
            y0, x0 = random.randint(0, s.shape[-2] - side), random.randint(0, s.shape[-1] - side)
            crops.append(torch.cat([t[:, y0:y0 + side, x0:x0 + side] for t in (s, d)]))
        return torch.stack(crops).to(self.device).float()

    def candidate_losses(self, both: torch.Tensor) -> torch.Tensor:
        """(candidates,): :meth:`gated_loss` of every candidate on the same :meth:`crops`, computed as one wider
        network (their layers side by side, the second grouped per candidate), so 4 candidates cost 1.3x one
        gate, not 4x (``benchmarks/gate_candidates_cost.py``). The candidates share their standardisation."""
        gates = self.candidates()
        if len(gates) == 1:
            return self.gated_loss(self.gate, both)[None]
        n = self.gate.config.features
        stats = both[:, :n]
        if self.gate.config.standardise:
            stats = (stats - self.gate.feature_mean) / self.gate.feature_std
        first = [g.net[0] for g in gates]
        ab = F.conv2d(stats, torch.cat([c.weight for c in first]), torch.cat([c.bias for c in first]))
        if self.gate.config.hidden > 0:
            last = [g.net[2] for g in gates]
            ab = F.conv2d(F.gelu(ab), torch.cat([c.weight for c in last]), torch.cat([c.bias for c in last]),
                          groups=len(gates))
        ab = torch.sigmoid(ab).unflatten(1, (len(gates), -1))  # (B, candidates, 2 or 4, H, W)
        a, b = ab[:, :, 0::2], ab[:, :, 1::2]  # (B, candidates, 1 or 2, H, W)
        lost, change, wanted = (both[:, None, n + k:n + k + 3] for k in (0, 3, 6))
        error = blend(a, lost) + blend(b, change) - wanted
        return self._log_mse(error.square().mean(dim=(2, 3, 4)))  # over B, per candidate

    def gated_loss(self, gate: FidelityGate, both: torch.Tensor) -> torch.Tensor:
        """:meth:`loss` of ``gate``'s output on :meth:`crops`."""
        n = gate.config.features
        a, b = gate.gates_from(both[:, :n])
        lost, change, wanted = both[:, n:n + 3], both[:, n + 3:n + 6], both[:, n + 6:]
        error = blend(a, lost) + blend(b, change) - wanted  # the gated output minus the clean image
        return self._log_mse(error.square().mean(dim=(1, 2, 3)))

    def _shared_step(self, batch: Dict[str, Any], stage: str, batch_idx: int = 0) -> Optional[torch.Tensor]:
        if self.val_max_batches is not None and batch_idx >= self.val_max_batches:
            return None
        x, restored, round_trip = self.restore(batch)
        k = x.shape[0]
        batch = {**batch, "degraded": batch["degraded"][:k], "clean": batch["clean"][:k],
                 "degradation": list(batch["degradation"])[:k]}
        gate = self.candidates()[self.validated]
        with torch.no_grad():
            gated = gate(x, restored, round_trip).clamp(-1, 1)
            clean = to_signed(batch["clean"]).float()
            loss = self.loss(gated, clean)
            B = x.shape[0]
            self.log_metric("loss", loss, B, stage)
            degradations = list(batch["degradation"])
            self.log_restoration(stage, to_unit(restored), batch["clean"], degradations, suffix="_before")
            self.log_restoration(stage, to_unit(gated), batch["clean"], degradations, suffix="_after")
            a, b = gate.gates(x, restored, round_trip)
            self.log_metric("gate_a", a.mean(), B, stage)
            self.log_metric("gate_b", b.mean(), B, stage)
            if batch_idx == 0:
                self.log_grid(f"{stage}_fidelity", [batch["degraded"], to_unit(restored), to_unit(gated), batch["clean"]],
                              ["degraded", "restorer", "with the gate", "clean"])
        return loss

    def configure_optimizers(self):
        return self.optimizer([p for gate in self.candidates() for p in gate.parameters() if p.requires_grad])

    def rvar_meta(self) -> Dict[str, Any]:
        return {"stage": "fidelity", "init_from": self.init_from, **self.decoder_meta}  # a fine-tuned decoder stays so
