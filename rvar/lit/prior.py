"""``PriorModule``: train RestoreVAR's prior to predict the clean image's tokens from the degraded latent.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), section 3.2; reference code
sudraj2002/RestoreVAR ``trainer.py``. Teacher forcing over all scales: the frozen tokenizer gives the clean
image's multi-scale indices and the degraded image's condition latent; the prior is trained with
cross-entropy on every token. Validation restores (KV-cached next-scale sampling, ``PriorConfig.decoding``) and
decodes.

Shapes: B batch, L tokens of all scales, V vocabulary, S condition tokens, Cv latent channels.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable

from rvar.errors import UserError
from rvar.lit.base import RVARModule, restorevar_adamw
from rvar.lit.optim import OptimizationConfig
from rvar.nn.checkpointing import enable_activation_checkpointing
from rvar.nn.checkpoints import build_tokenizer, load_checkpoint, load_strict, model_description, sub_state_dict
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.pixels import to_signed, to_unit


class PriorModule(RVARModule):
    """The prior stage.

    Args:
        tokenizer_ckpt: rvar checkpoint holding the tokenizer (frozen); None: the one inside ``init_from``.
        prior: prior sizes (``PriorConfig`` fields, geometry from the tokenizer); None: those of ``init_from``.
        init_from: an rvar ``prior``/``restorer`` checkpoint to start from (e.g. ``rvar import-checkpoint``'s).
        label_smoothing: cross-entropy label smoothing.
        optimizer: default :func:`~rvar.lit.base.restorevar_adamw` (AdamW 1e-4, betas 0.9/0.95, wd 0.05).
        val_max_batches: validation batches that are also restored by sampling (the costly part); the
            teacher-forced ``val/loss`` covers every batch. None: all.
        grid_images: samples in the degraded | restored | clean grid per validation epoch.
        gradient_checkpointing: recompute each prior block's activations in the backward pass (less memory,
            about one more forward of compute; same outputs and gradients). See :mod:`rvar.nn.checkpointing`.
        condition_dropout: probability that a training sample's condition latent is replaced by zeros (a null
            condition), so the prior also learns the clean tokens' own statistics, as VAR's unconditional
            pre-training does; the shipped CPU prior is pre-trained so (``rvar/demo/asset.py``). 0: never.
        optimization: parameter groups, learning-rate rule and schedule (:class:`~rvar.lit.optim.OptimizationConfig`);
            None: rvar's recipe (one group, constant rate). ``experiments/restorevar.yaml`` sets the published one.
        decoding: how the prior's samples are decoded (``PriorConfig.decoding``: ``greedy``, RestoreVAR's, or
            ``expected``), in validation and in the checkpoint, which the refiner stage and ``rvar restore``
            follow; None: ``prior.decoding`` or the ``init_from`` checkpoint's. Training is the same either way,
            unless ``expected_loss`` is set.
        expected_loss: weight of a second loss beside the cross-entropy: the squared distance between each
            token's expected codeword (softmax(logits) @ codebook, what ``decoding: expected`` adds) and the target
            token's codeword, over the codebook's mean squared norm. It teaches the probabilities' mean, which
            expected decoding uses, and not only the argmax. 0: cross-entropy alone (RestoreVAR's).

    The loss is the mean cross-entropy over all B x L tokens (the reference's per-token weights 1/L summed over
    the tokens, then averaged over the batch, are the same mean).
    """

    def __init__(self, tokenizer_ckpt: Optional[str] = None, prior: Optional[PriorConfig] = None,
                 init_from: Optional[str] = None, label_smoothing: float = 0.0,
                 optimizer: OptimizerCallable = restorevar_adamw, val_max_batches: Optional[int] = 4,
                 grid_images: int = 4, gradient_checkpointing: bool = False, condition_dropout: float = 0.0,
                 optimization: Optional[OptimizationConfig] = None, decoding: Optional[str] = None,
                 expected_loss: float = 0.0) -> None:
        super().__init__(grid_images)
        prior = PriorConfig(**prior) if isinstance(prior, dict) else prior
        optimization = OptimizationConfig(**optimization) if isinstance(optimization, dict) else optimization
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimization = optimization or OptimizationConfig()
        self.optimizer, self.label_smoothing, self.val_max_batches = optimizer, label_smoothing, val_max_batches
        self.tokenizer_ckpt, self.init_from = tokenizer_ckpt, init_from
        if not 0.0 <= condition_dropout < 1.0:
            raise UserError(f"PriorModule: condition_dropout must be in [0, 1), got {condition_dropout}")
        self.condition_dropout = float(condition_dropout)
        if not expected_loss >= 0.0:
            raise UserError(f"PriorModule: expected_loss must be >= 0, got {expected_loss}")
        self.expected_loss = float(expected_loss)
        init = load_checkpoint(init_from, kinds=("prior", "restorer")) if init_from else None
        # 1. the frozen tokenizer
        if tokenizer_ckpt is None and init is None:
            raise UserError("PriorModule: give `tokenizer_ckpt` or an `init_from` checkpoint that holds a tokenizer")
        source = tokenizer_ckpt or init_from
        self.tokenizer = build_tokenizer(init if tokenizer_ckpt is None else load_checkpoint(tokenizer_ckpt), source)
        self.freeze_submodule("tokenizer")
        # 2. the prior on the tokenizer's geometry, optionally from a checkpoint
        if prior is None and init is None:
            raise UserError("PriorModule: give `prior` (sizes) or `init_from` (a prior checkpoint)")
        sizes = prior.to_dict() if prior is not None else model_description(init, init_from)["init_args"]["prior"]
        if decoding is not None:
            sizes = {**sizes, "decoding": decoding}
        self.prior = RestoreVARPrior(PriorConfig.for_tokenizer(self.tokenizer.config, source, **sizes))
        if init is not None:
            load_strict(self.prior, sub_state_dict(init["state_dict"], "prior."), init_from)
        # 3. optional activation checkpointing (training memory)
        if gradient_checkpointing:
            enable_activation_checkpointing(self.prior.blocks)

    # ---- steps --------------------------------------------------------------------------------------
    @torch.no_grad()
    def tokenize(self, batch: Dict[str, Any]):
        """(teacher-forcing input (B, L-1, Cv), targets (B, L), condition (B, S, Cv))."""
        idx_Bl = self.tokenizer.img_to_indices(to_signed(batch["clean"]))
        x_BLCv = self.tokenizer.quantize.teacher_forcing_input(idx_Bl)
        cond_BSCv = self.tokenizer.encode_condition(to_signed(batch["degraded"]))
        if self.training and self.condition_dropout > 0:
            keep_B11 = torch.rand(cond_BSCv.shape[0], 1, 1, device=cond_BSCv.device) >= self.condition_dropout
            cond_BSCv = cond_BSCv * keep_B11
        return x_BLCv, torch.cat(idx_Bl, dim=1), cond_BSCv

    def _shared_step(self, batch: Dict[str, Any], stage: str, batch_idx: int = 0) -> torch.Tensor:
        x_BLCv, target_BL, cond_BSCv = self.tokenize(batch)
        logits_BLV = self.prior(x_BLCv, cond_BSCv)
        loss = F.cross_entropy(logits_BLV.flatten(0, 1), target_BL.flatten(), label_smoothing=self.label_smoothing)
        accuracy = (logits_BLV.argmax(-1) == target_BL).float().mean()
        B = target_BL.shape[0]
        if self.expected_loss > 0:
            codebook_VC = self.tokenizer.quantize.embedding.weight.detach().float()
            expected_BLC = logits_BLV.float().softmax(-1) @ codebook_VC
            code_error = (expected_BLC - codebook_VC[target_BL]).square().sum(-1).mean()
            code_error = code_error / codebook_VC.square().sum(-1).mean()
            self.log_metric("code_error", code_error, B, stage)
            loss = loss + self.expected_loss * code_error
        self.log_metric("loss", loss, B, stage, prog_bar=True)
        self.log_metric("accuracy", accuracy, B, stage)
        if stage != "train" and (self.val_max_batches is None or batch_idx < self.val_max_batches):
            self._restore_and_log(batch, cond_BSCv, stage, batch_idx)
        return loss

    @torch.no_grad()
    def _restore_and_log(self, batch: Dict[str, Any], cond_BSCv: torch.Tensor, stage: str, batch_idx: int) -> None:
        out = self.prior.sample(cond_BSCv, self.tokenizer.quantize)  # greedy or expected (config.decoding)
        restored01 = to_unit(self.tokenizer.decode(out.f_hat.float()))
        self.log_restoration(stage, restored01, batch["clean"], list(batch["degradation"]))
        if batch_idx == 0:
            self.log_grid(f"{stage}_restored", [batch["degraded"], restored01, batch["clean"]],
                          ["degraded", "restored", "clean"])

    # ---- checkpoints --------------------------------------------------------------------------------
    def rvar_meta(self) -> Dict[str, Any]:
        return {"stage": "prior", "tokenizer_ckpt": self.tokenizer_ckpt, "init_from": self.init_from}
