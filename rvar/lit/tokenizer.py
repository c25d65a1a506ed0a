"""``TokenizerModule``: train VAR's multi-scale VQ tokenizer, or fine-tune its decoder RestoreVAR's way.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), section 3.3 (decoder fine-tuning on
continuous latents); the tokenizer is VAR's (Tian et al., 2024; FoundationVision/VAR ``models/vqvae.py``).

Two modes:

* ``full``: encoder + quantiser + decoder learn to reconstruct clean images (L1/L2 + VQ loss, optional
  LPIPS and PatchGAN terms).
* ``decoder``: encoder and quantiser frozen; the decoder (and ``post_quant_conv``) learns to render the
  continuous latent ``quant_conv(encoder(clean))``, which is what the latent refiner predicts. Started from a
  ``prior``/``restorer`` checkpoint, the frozen prior (and refiner) travel along so the result is again a
  complete restorer with ``meta.decoder = "finetuned"``.

Shapes: B batch, H/W image side, C latent channels, h/w latent side.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable

from rvar.data.degrade import sample_seed
from rvar.errors import UserError
from rvar.lit.base import RVARModule, restorevar_adamw
from rvar.lit.gan import PatchDiscriminator, hinge_discriminator_loss, hinge_generator_loss
from rvar.eval.metrics import psnr_per_image, ssim_per_image
from rvar.nn.checkpoints import build_restorer, build_tokenizer, load_checkpoint, load_strict
from rvar.nn.tokenizer import VQVAE, TokenizerConfig
from rvar.pixels import to_signed, to_unit

MODES = ("full", "decoder")


class TokenizerModule(RVARModule):
    """The tokenizer stage.

    Args:
        tokenizer: network sizes (``TokenizerConfig`` fields in YAML); None: those of ``init_from``.
        init_from: an rvar checkpoint (any kind with a tokenizer) to start from.
        mode: ``full`` or ``decoder`` (see the module docstring).
        l1_weight / l2_weight: pixel reconstruction terms.
        vq_weight: codebook + commitment term (``full`` mode only).
        perceptual_weight: LPIPS term; skipped with one warning when the LPIPS backbone is absent.
        gan_weight: PatchGAN hinge term (0: off); turning it on switches to manual optimisation with two
            optimizers (``gradient_clip_val`` must then stay unset).
        gan_start_step: training batches before the adversarial term (and discriminator training) start.
            With the GAN on, Lightning's ``global_step`` (and so ``max_steps``) counts the steps of both
            optimizers.
        continuous_weight: ``full`` mode: weight of the same pixel terms on the continuous path
            ``decode(quant_conv(encoder(x)))`` (no quantisation), so the decoder learns the latents the refiner
            predicts from the start (RestoreVAR fine-tunes it for them afterwards). 0: VAR's tokenizer loss.
        codebook_restart_every: ``full`` mode: every this many training batches, codes that the quantiser's
            hit EMA shows as (nearly) unused are re-drawn from the batch's residual latents; a model trained
            from scratch also draws its whole codebook that way on the first batch. Without it a small
            codebook collapses to a handful of codes. 0: off.
        optimizer: builds the optimizer (and the discriminator's) from parameters; default
            :func:`~rvar.lit.base.restorevar_adamw`.
        grid_images: samples in the clean | reconstruction grid logged per validation epoch.
    """

    def __init__(self, tokenizer: Optional[TokenizerConfig] = None, init_from: Optional[str] = None,
                 mode: str = "full", l1_weight: float = 1.0, l2_weight: float = 0.0, vq_weight: float = 1.0,
                 perceptual_weight: float = 0.0, gan_weight: float = 0.0, gan_start_step: int = 0,
                 codebook_restart_every: int = 0, continuous_weight: float = 0.0, optimizer: OptimizerCallable = restorevar_adamw, grid_images: int = 4) -> None:
        super().__init__(grid_images)
        tokenizer = TokenizerConfig(**tokenizer) if isinstance(tokenizer, dict) else tokenizer
        if mode not in MODES:
            raise UserError(f"TokenizerModule: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if tokenizer is None and init_from is None:
            raise UserError("TokenizerModule: give `tokenizer` (sizes) or `init_from` (a checkpoint)")
        self.save_hyperparameters(ignore=["optimizer"])
        self.mode, self.init_from, self.optimizer = mode, init_from, optimizer
        self.native_crops_only = mode == "full"  # the decoder alone renders latents of any size
        self.l1_weight, self.l2_weight, self.vq_weight = l1_weight, l2_weight, vq_weight
        self.perceptual_weight, self.gan_weight, self.gan_start_step = perceptual_weight, gan_weight, gan_start_step
        self.codebook_restart_every = int(codebook_restart_every)
        self.continuous_weight = float(continuous_weight)
        # 1. networks: the tokenizer, plus a frozen prior/refiner (and fidelity gate) when fine-tuning a restorer's
        # decoder (a gate was fitted to the old decoder's outputs: fit it again after, see rvar.lit.fidelity)
        self.tokenizer = VQVAE(tokenizer) if tokenizer is not None else None
        self.prior = self.refiner = self.gate = None
        if init_from is not None:
            self._load_init(init_from)
        # 2. what trains
        if mode == "decoder":
            for name in ("tokenizer.encoder", "tokenizer.quant_conv", "tokenizer.quantize"):
                self.freeze_submodule(name)
        for name in ("prior", "refiner", "gate"):
            if getattr(self, name) is not None:
                self.freeze_submodule(name)
        # 3. optional adversarial term (manual optimisation: generator and discriminator alternate)
        self.discriminator = PatchDiscriminator() if gan_weight > 0 else None
        self.automatic_optimization = self.discriminator is None

    def _load_init(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if self.mode == "decoder" and ckpt.get("kind") in ("prior", "restorer"):
            restorer = build_restorer(ckpt, path)
            tokenizer, self.prior, self.refiner = restorer.tokenizer, restorer.prior, restorer.refiner
            self.gate = restorer.gate
        else:
            tokenizer = build_tokenizer(ckpt, path).train()
        if self.tokenizer is None:
            self.tokenizer = tokenizer
        else:
            load_strict(self.tokenizer, tokenizer.state_dict(), path)

    # ---- losses -------------------------------------------------------------------------------------
    def _reconstruct(self, clean_B3HW: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Reconstruction in [-1, 1] (unclamped) and the mode's extra outputs."""
        if self.mode == "decoder":
            with torch.no_grad():
                f_BChw = self.tokenizer.encode_continuous(clean_B3HW)
            return self.tokenizer.decode(f_BChw, clamp=False), {}
        if self.continuous_weight > 0:
            f_BChw = self.tokenizer.encode_continuous(clean_B3HW)
            q = self.tokenizer.quantize(f_BChw)
            return self.tokenizer.decode(q.f_hat, clamp=False), {
                "vq_loss": q.vq_loss, "codebook_usage": q.usage.mean(), "perplexity": q.perplexity,
                "continuous": self.tokenizer.decode(f_BChw, clamp=False)}
        out = self.tokenizer(clean_B3HW)
        return out.recon, {"vq_loss": out.vq_loss, "codebook_usage": out.usage.mean(), "perplexity": out.perplexity}

    def _perceptual(self, recon_B3HW: torch.Tensor, clean_B3HW: torch.Tensor) -> Optional[torch.Tensor]:
        model = self.lpips_model() if self.perceptual_weight > 0 else None
        return None if model is None else model(recon_B3HW.float(), clean_B3HW.float(), normalize=False).mean()

    def _generator_losses(self, clean_B3HW: torch.Tensor, adversarial: bool):
        recon_B3HW, extras = self._reconstruct(clean_B3HW)
        terms = {"recon_l1": F.l1_loss(recon_B3HW.float(), clean_B3HW),
                 "recon_l2": F.mse_loss(recon_B3HW.float(), clean_B3HW)}
        loss = self.l1_weight * terms["recon_l1"] + self.l2_weight * terms["recon_l2"]
        if "vq_loss" in extras:
            loss = loss + self.vq_weight * extras["vq_loss"]
        if "continuous" in extras:
            continuous = extras.pop("continuous").float()
            terms["continuous_l1"] = F.l1_loss(continuous, clean_B3HW)
            terms["continuous_l2"] = F.mse_loss(continuous, clean_B3HW)
            loss = loss + self.continuous_weight * (self.l1_weight * terms["continuous_l1"] +
                                                    self.l2_weight * terms["continuous_l2"])
        perceptual = self._perceptual(recon_B3HW, clean_B3HW)
        if perceptual is not None:
            terms["perceptual"] = perceptual
            loss = loss + self.perceptual_weight * perceptual
        if adversarial:
            terms["generator_gan"] = hinge_generator_loss(self.discriminator(recon_B3HW))
            loss = loss + self.gan_weight * terms["generator_gan"]
        return loss, recon_B3HW, {**terms, **extras}

    @property
    def gan_active(self) -> bool:
        return self.discriminator is not None and self.trainer.fit_loop.total_batch_idx >= self.gan_start_step

    # ---- codebook upkeep (the quantiser restarts codes; this adds DDP and the seeded generator) ---
    @torch.no_grad()
    def restart_codes(self, clean_B3HW: torch.Tensor, everything: bool, step: int = 0) -> int:
        """Re-draw unused (or all) codewords from the global batch's residual latents; returns how many. DDP: the
        ranks' latents are gathered in rank order and rank 0's draw is broadcast. The generator is seeded from
        (``torch.initial_seed()``, ``step``): Lightning re-seeds the global RNG under DDP only, not on resume."""
        quantizer = self.tokenizer.quantize
        dead_V = quantizer.dead_codes(everything)
        if not dead_V.any():
            return 0
        f_BChw = self.tokenizer.encode_continuous(clean_B3HW).float()
        if self.trainer.world_size > 1:
            f_BChw = self.all_gather(f_BChw).flatten(0, 1)  # (W, B, C, h, w) -> (W * B, C, h, w)
        generator = torch.Generator().manual_seed(sample_seed(torch.initial_seed(), "codebook_restart", step))
        quantizer.restart_codes(dead_V, quantizer.residual_rows(f_BChw), generator,
                                share=lambda fresh: self.trainer.strategy.broadcast(fresh, 0))
        return int(dead_V.sum())

    def on_train_batch_start(self, batch: Dict[str, Any], batch_idx: int) -> None:
        every = self.codebook_restart_every
        if self.mode != "full" or every <= 0:
            return
        step = self.trainer.fit_loop.total_batch_idx
        fresh_start = step == 0 and self.init_from is None
        if fresh_start or (step > 0 and step % every == 0):
            restarted = self.restart_codes(to_signed(batch["clean"]), everything=fresh_start, step=step)
            self.log("train/codes_restarted", float(restarted), on_step=True, on_epoch=False, batch_size=1)

    # ---- steps --------------------------------------------------------------------------------------
    def _shared_step(self, batch: Dict[str, Any], stage: str, batch_idx: int = 0) -> torch.Tensor:
        clean_B3HW = to_signed(batch["clean"])
        B = clean_B3HW.shape[0]
        adversarial = stage == "train" and self.gan_active
        if stage == "train" and not self.automatic_optimization:
            return self._manual_train_step(clean_B3HW, adversarial)
        loss, recon_B3HW, terms = self._generator_losses(clean_B3HW, adversarial)
        self._log_terms(stage, loss, terms, B)
        if stage != "train":
            self._log_quality(stage, recon_B3HW, clean_B3HW, batch_idx)
        return loss

    def _manual_train_step(self, clean_B3HW: torch.Tensor, adversarial: bool) -> torch.Tensor:
        opt_g, opt_d = self.optimizers()
        loss, recon_B3HW, terms = self._generator_losses(clean_B3HW, adversarial)
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()
        if adversarial:
            d_loss = hinge_discriminator_loss(self.discriminator(clean_B3HW), self.discriminator(recon_B3HW.detach()))
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
            terms["discriminator_gan"] = d_loss.detach()
        self._log_terms("train", loss, terms, clean_B3HW.shape[0])
        return loss.detach()

    def _log_terms(self, stage: str, loss: torch.Tensor, terms: Dict[str, torch.Tensor], batch_size: int) -> None:
        self.log_metric("loss", loss, batch_size, stage, prog_bar=True)
        for name, value in terms.items():
            self.log_metric(name, value, batch_size, stage)

    @torch.no_grad()
    def _log_quality(self, stage: str, recon_B3HW: torch.Tensor, clean_B3HW: torch.Tensor, batch_idx: int) -> None:
        recon01, clean01 = to_unit(recon_B3HW), to_unit(clean_B3HW)
        B = recon01.shape[0]
        self.log_metric("psnr", psnr_per_image(recon01, clean01).mean(), B, stage, prog_bar=True)
        self.log_metric("ssim", ssim_per_image(recon01, clean01).mean(), B, stage)
        if batch_idx == 0:
            self.log_grid(f"{stage}_reconstruction", [clean01, recon01], ["clean", "reconstruction"])

    # ---- optimisation and checkpoints ---------------------------------------------------------------
    def trainable_parameters(self):
        return [p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("discriminator.")]

    def configure_optimizers(self):
        generator = self.optimizer(self.trainable_parameters())
        if self.discriminator is None:
            return generator
        return [generator, self.optimizer(self.discriminator.parameters())]

    def rvar_meta(self) -> Dict[str, Any]:
        decoder = {"decoder": "finetuned"} if self.mode == "decoder" else {}
        return {"stage": "tokenizer", "mode": self.mode, "init_from": self.init_from, **decoder}
