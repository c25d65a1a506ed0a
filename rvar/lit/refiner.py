"""``RefinerModule``: train RestoreVAR's latent refiner on the frozen prior's restorations.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), section 3.3; reference code
sudraj2002/RestoreVAR ``models/vae_refiner_rope.py``. The tokenizer and the prior are frozen: the prior
samples the quantised latent f_hat of the degraded image (greedy as published, or expected codewords; no
gradient) and the refiner learns, with
an L1 loss, to move it to the clean image's continuous latent ``quant_conv(encoder(clean))``.

Shapes: B batch, N latent tokens (h*w), M prior tokens (L), Cv latent channels, h/w latent side.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from lightning.pytorch.cli import OptimizerCallable

from rvar.lit.base import RVARModule, restorevar_adamw
from rvar.lit.optim import OptimizationConfig
from rvar.nn.checkpointing import enable_activation_checkpointing, refiner_units
from rvar.nn.checkpoints import build_restorer, load_checkpoint, load_strict, sub_state_dict
from rvar.nn.refiner import LatentRefiner, RefinerConfig
from rvar.errors import UserError
from rvar.pixels import to_signed, to_unit


class RefinerModule(RVARModule):
    """The refiner stage; its checkpoint (kind ``restorer``) is what ``rvar restore`` consumes.

    Args:
        prior_ckpt: rvar ``prior`` or ``restorer`` checkpoint (tokenizer + prior, both frozen here).
        refiner_dim / refiner_depth / refiner_heads / refiner_mlp_dim: refiner sizes; its sequence lengths and
            input widths follow the tokenizer and prior (:meth:`RefinerConfig.for_prior`). The defaults are
            RestoreVAR's released refiner.
        optimizer: default :func:`~rvar.lit.base.restorevar_adamw`.
        val_max_batches: validation batches to evaluate (each one samples the prior); None: all.
        grid_images: samples in the degraded | prior only | refined | clean grid per validation epoch.
        condition_on_degraded: also feed the degraded image's continuous latent straight into the refiner
            (``RefinerConfig.in_dim_degraded``; off in the released RestoreVAR, on in the CPU demo recipe).
        residual_from_degraded: add the refiner's residual to that latent instead of to f_hat
            (``RefinerConfig.residual_from_degraded``; needs ``condition_on_degraded``).
        whole_image_context: also give the refiner the whole degraded image, resized to the native size
            (``RefinerConfig.in_dim_context``; off in the released RestoreVAR, which restores whole images): needs
            ``data.context_size``, and ``rvar restore`` then passes each tiled image whole beside its tiles.
        gradient_checkpointing: recompute the refiner's attention/FFN activations in the backward pass (less
            memory, same outputs and gradients). See :mod:`rvar.nn.checkpointing`.
        pixel_weight: weight of an extra L1 + L2 loss between the frozen decoder's rendering of the refined
            latent and the clean image (0: the paper's latent L1 only). The latent L1 treats every latent channel
            alike; the pixel term weighs errors by what they do to the image (the CPU demo recipe uses it).
        prior_inputs: False trains the no-prior ablation (``RefinerConfig.reads_prior``): the refiner restores
            from the degraded latent alone (needs ``residual_from_degraded``), and the prior is never sampled, so
            each step is cheaper and the same minutes buy more steps.
        prior_drop_path_rate: stochastic depth of the frozen prior while it samples the training batches. The
            reference keeps its prior in train mode there, so the rate it was built with (``0.1 * depth / 24``)
            stays live and the refiner sees slightly perturbed rollouts; None: the prior samples in eval mode
            (deterministic, rvar's recipe). Validation always samples in eval mode.
        optimization: parameter groups, learning-rate rule and schedule (:class:`~rvar.lit.optim.OptimizationConfig`);
            None: rvar's recipe. ``experiments/refiner.yaml`` sets the published one.
        prior_decoding: decode the frozen prior's samples this way (``PriorConfig.decoding``), here and in the
            restorer checkpoint; None: as the prior checkpoint says.
        blend_degraded: add the residual to a learned per-token blend of f_hat and the degraded latent
            (``RefinerConfig.blend_degraded``; needs ``condition_on_degraded``, not ``residual_from_degraded``).
        init_from: a ``restorer`` checkpoint whose refiner starts this one (same sizes and inputs), for example
            the shipped refiner pre-trained on clean images (``rvar/assets/refiner_cpu_f8.ckpt``). If it was
            pre-trained with ``hide_degraded``, its degraded-latent and whole-image-context projections, which
            never saw an input, restart at zero: the refiner begins as the pre-trained one and learns to read them.
        hide_degraded: give the refiner zeros for the degraded latent and the whole-image context (pre-training on
            clean images, where the "degraded" latent is the target itself and copying it would teach nothing):
            it learns the published refiner's task alone, the prior's quantised latent to the continuous one.
    """

    def __init__(self, prior_ckpt: str, refiner_dim: int = 384, refiner_depth: int = 12, refiner_heads: int = 6,
                 refiner_mlp_dim: int = 768, optimizer: OptimizerCallable = restorevar_adamw,
                 val_max_batches: Optional[int] = None, grid_images: int = 4,
                 condition_on_degraded: bool = False, residual_from_degraded: bool = False,
                 gradient_checkpointing: bool = False, pixel_weight: float = 0.0,
                 whole_image_context: bool = False, prior_inputs: bool = True,
                 prior_drop_path_rate: Optional[float] = None,
                 optimization: Optional[OptimizationConfig] = None,
                 prior_decoding: Optional[str] = None, blend_degraded: bool = False,
                 init_from: Optional[str] = None, hide_degraded: bool = False, train_prior: bool = False) -> None:
        super().__init__(grid_images)
        optimization = OptimizationConfig(**optimization) if isinstance(optimization, dict) else optimization
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimization = optimization or OptimizationConfig()
        self.prior_ckpt, self.optimizer, self.val_max_batches = prior_ckpt, optimizer, val_max_batches
        self.pixel_weight = float(pixel_weight)
        self.init_from, self.hide_degraded = init_from, bool(hide_degraded)
        if hide_degraded and not prior_inputs:
            raise UserError("RefinerModule: hide_degraded (pre-training on the prior's outputs) needs prior_inputs true")
        if not prior_inputs and not residual_from_degraded:
            raise UserError("RefinerModule: prior_inputs false (the no-prior ablation) needs residual_from_degraded true")
        if blend_degraded and (residual_from_degraded or not condition_on_degraded):
            raise UserError("RefinerModule: blend_degraded needs condition_on_degraded true and residual_from_degraded "
                            "false (the blend replaces the choice between the two bases)")
        # 1. frozen tokenizer and prior
        restorer = build_restorer(load_checkpoint(prior_ckpt, kinds=("prior", "restorer")), prior_ckpt)
        self.tokenizer, self.prior = restorer.tokenizer, restorer.prior
        if prior_decoding is not None:
            self.prior.set_decoding(prior_decoding)
        self.freeze_submodule("tokenizer")
        self.train_prior = bool(train_prior)
        if train_prior and not prior_inputs:
            raise UserError("RefinerModule: train_prior needs prior_inputs true (the ablation samples no prior)")
        if not self.train_prior:  # else fine-tuned with the refiner, end to end (its mode is set per rollout)
            self.freeze_submodule("prior")
        self.prior_drop_path_rate = prior_drop_path_rate
        if prior_drop_path_rate is not None:
            self.prior.set_drop_path_rate(prior_drop_path_rate)
        # 2. the refiner, sized for them
        pc = self.prior.config
        self.refiner = LatentRefiner(RefinerConfig.for_prior(
            pc, dim=refiner_dim, depth=refiner_depth, heads=refiner_heads, mlp_dim=refiner_mlp_dim,
            in_dim_degraded=pc.z_channels if condition_on_degraded else 0,
            residual_from_degraded=residual_from_degraded, in_dim_context=pc.z_channels if whole_image_context else 0,
            reads_prior=prior_inputs, blend_degraded=blend_degraded))
        if init_from is not None:
            self._load_init(init_from)
        if self.hide_degraded:  # inputs it never sees stay as built, so their path adds exactly zero
            for name in ("norm_in_degraded", "proj_in_degraded", "norm_in_context", "proj_in_context"):
                if hasattr(self.refiner, name):
                    getattr(self.refiner, name).requires_grad_(False)
        # 3. optional activation checkpointing (training memory)
        if gradient_checkpointing:
            enable_activation_checkpointing(refiner_units(self.refiner))

    def _load_init(self, path: str) -> None:
        """Start the refiner from ``path``'s (a restorer with a refiner of the same sizes and inputs)."""
        init = load_checkpoint(path, kinds=("restorer",))
        weights = sub_state_dict(init["state_dict"], "refiner.")
        if not weights:
            raise UserError(f"{path}: holds no refiner to start from (init_from needs a restorer checkpoint)")
        load_strict(self.refiner, weights, path)
        if (init.get("meta") or {}).get("hide_degraded") is True and not self.hide_degraded:
            with torch.no_grad():  # inputs the pre-training never showed it (they added zero there): silent until the
                # refiner learns to read them, so it starts as exactly the pre-trained refiner
                for name in ("proj_in_degraded", "proj_in_context"):
                    if hasattr(self.refiner, name):
                        getattr(self.refiner, name).weight.zero_()

    # ---- steps --------------------------------------------------------------------------------------
    def prior_latents(self, batch: Dict[str, Any]):
        """(f_hat tokens (B, N, Cv), prior hidden states (B, M, C), clean latent tokens (B, N, Cv), side,
        degraded encoder tokens (B, N, Cv) or None, whole-image context tokens (B, N, Cv) or None)."""
        learn_prior = self.train_prior and torch.is_grad_enabled()  # training, not validation
        with torch.no_grad():
            return self._prior_latents(batch, learn_prior)

    def _prior_latents(self, batch: Dict[str, Any], learn_prior: bool):
        cond_BSCv = self.tokenizer.encode_condition(to_signed(batch["degraded"]))
        if not self.refiner.config.reads_prior:
            out = self.prior.placeholder(cond_BSCv)
        else:
            live_drop_path = self.training and self.prior_drop_path_rate is not None
            self.prior.train(live_drop_path)  # the reference's rollout: prior in train mode, stochastic depth live
            try:
                # greedy or expected (config.decoding); with train_prior the only part with gradients: expected
                # codewords and hidden states pass the refiner's gradient into the prior
                with torch.set_grad_enabled(learn_prior):
                    out = self.prior.rollout(cond_BSCv, self.tokenizer.quantize)
            finally:
                self.prior.eval()
        target_BChw = self.tokenizer.encode_continuous(to_signed(batch["clean"]))
        side = out.f_hat.shape[-1]
        with torch.set_grad_enabled(learn_prior):  # keep the prior's outputs attached to its graph
            f_hat_BNC = rearrange(out.f_hat.float(), "b c h w -> b (h w) c")
            last_block_BMC = out.last_block.float()
        degraded_BNC = context_BNC = None
        if self.hide_degraded:  # pre-training: the refiner sees the prior's outputs only
            zeros_BNC = torch.zeros_like(f_hat_BNC)
            degraded_BNC = zeros_BNC if self.refiner.uses_degraded else None
            context_BNC = zeros_BNC if self.refiner.uses_context else None
        else:
            if self.refiner.uses_context:
                if "context" not in batch:
                    raise UserError("model.init_args.whole_image_context needs whole-image context in the batches: "
                                    "set data.init_args.context_size (e.g. 256)")
                context_BSCv = self.tokenizer.encode_condition(to_signed(batch["context"]))
                context_BNC = self.tokenizer.condition_to_continuous(context_BSCv).float()
            if self.refiner.uses_degraded:
                degraded_BNC = self.tokenizer.condition_to_continuous(cond_BSCv).float()
        return (f_hat_BNC, last_block_BMC, rearrange(target_BChw.float(), "b c h w -> b (h w) c"), side,
                degraded_BNC, context_BNC)

    def _shared_step(self, batch: Dict[str, Any], stage: str, batch_idx: int = 0) -> torch.Tensor:
        if stage != "train" and self.val_max_batches is not None and batch_idx >= self.val_max_batches:
            return None
        f_hat_BNC, last_block_BMC, target_BNC, side, degraded_BNC, context_BNC = self.prior_latents(batch)
        refined_BNC = self.refiner(f_hat_BNC, last_block_BMC, degraded_BNC, context_BNC)
        loss = F.l1_loss(refined_BNC, target_BNC)
        B = f_hat_BNC.shape[0]
        self.log_metric("latent_l1", loss, B, stage, prog_bar=True)
        if self.pixel_weight > 0:
            rendered_B3HW = self.tokenizer.decode(rearrange(refined_BNC, "b (h w) c -> b c h w", h=side, w=side),
                                                  clamp=False).float()
            clean_B3HW = to_signed(batch["clean"])
            pixel = F.l1_loss(rendered_B3HW, clean_B3HW) + F.mse_loss(rendered_B3HW, clean_B3HW)
            self.log_metric("pixel_loss", pixel, B, stage)
            loss = loss + self.pixel_weight * pixel
        self.log_metric("loss", loss, B, stage)  # every stage logs stage/loss (lightning_config monitors val/loss)
        if stage != "train":
            self.log_metric("latent_l1_before", F.l1_loss(f_hat_BNC, target_BNC), B, stage)
            self._log_images(batch, f_hat_BNC, refined_BNC, side, stage, batch_idx)
        return loss

    @torch.no_grad()
    def _log_images(self, batch, f_hat_BNC, refined_BNC, side: int, stage: str, batch_idx: int) -> None:
        def decode(tokens_BNC):
            return to_unit(self.tokenizer.decode(rearrange(tokens_BNC, "b (h w) c -> b c h w", h=side, w=side)))

        before01, after01 = decode(f_hat_BNC), decode(refined_BNC)
        degradations = list(batch["degradation"])
        self.log_restoration(stage, before01, batch["clean"], degradations, suffix="_before")
        self.log_restoration(stage, after01, batch["clean"], degradations, suffix="_after")
        if batch_idx == 0:
            self.log_grid(f"{stage}_refined", [batch["degraded"], before01, after01, batch["clean"]],
                          ["degraded", "prior only", "refined", "clean"])

    # ---- checkpoints --------------------------------------------------------------------------------
    def rvar_meta(self) -> Dict[str, Any]:
        meta = {"stage": "refiner", "prior_ckpt": self.prior_ckpt}
        if self.init_from:
            meta["init_from"] = self.init_from
        if self.hide_degraded:  # pre-trained without its degraded inputs: init_from restarts their projections
            meta["hide_degraded"] = True
        return meta
