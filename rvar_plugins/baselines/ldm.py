"""The latent-diffusion baseline: a DiT denoiser in the rvar tokenizer's continuous latent.

The generative reference RestoreVAR is compared with (arXiv 2505.18047, section 4: diffusion restorers are
slow because they need tens of denoiser passes). The frozen tokenizer encodes the clean and degraded images
with ``encode_continuous`` (``quant_conv(encoder(x))``, no quantisation); :class:`LatentDiT`, given the noisy
clean latent and the degraded latent (concatenated channel-wise, as latent-diffusion restorers do, or through
cross-attention), predicts the noise (DDPM's epsilon objective), the clean latent (``sample``, x0-prediction)
or the velocity (``v_prediction``); x0- and v-prediction learn a usable restorer in far fewer steps; restoration
samples with DDIM or DPM-Solver++ (diffusers' schedulers, not hand-written schedules) and decodes with
``tokenizer.decode``.

Shapes: B batch, Cv latent channels, h/w latent side, H/W image side.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable

from rvar.errors import CheckpointError, UserError
from rvar.nn.checkpoints import build_tokenizer, load_checkpoint, load_strict, read_torch_file
from rvar.nn.tokenizer import VQVAE, TokenizerConfig
from rvar.pixels import to_signed, to_unit
from rvar.registry import register_baseline
from rvar_plugins.baselines.common import BaselineModule
from rvar_plugins.baselines.dit import DenoiserConfig, LatentDiT

SAMPLERS = ("ddim", "dpm_solver")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")  # diffusers' names
TOKENIZER_PRESETS = ("tiny", "vq_f16_256", "vq_f16_512")


def load_tokenizer(path: Optional[str], preset: str, config: Optional[Dict[str, Any]] = None) -> VQVAE:
    """The frozen tokenizer of the LDM.

    Args:
        path: an rvar checkpoint holding a tokenizer (any kind), or raw VQVAE weights (VAR's key layout, e.g.
            ``vae_ch160v4096z32.pth``) whose sizes are given by ``preset``; None: random weights (tests,
            or weights that a checkpoint will load later).
        preset: ``TokenizerConfig`` preset for raw weights and for ``path`` None.
        config: explicit ``TokenizerConfig`` fields, which win over ``preset``.
    """
    if preset not in TOKENIZER_PRESETS:
        raise UserError(f"tokenizer_preset {preset!r}: known presets are {', '.join(TOKENIZER_PRESETS)}")
    tok_cfg = TokenizerConfig(**config) if config else getattr(TokenizerConfig, preset)()
    if path is None:
        return VQVAE(tok_cfg)
    raw = read_torch_file(path)
    if raw.get("rvar_format") is not None:
        return build_tokenizer(load_checkpoint(path), str(path))
    if not any(k.startswith("encoder.") for k in raw):
        raise CheckpointError(f"{path}: neither an rvar checkpoint nor VQVAE weights (no encoder.* keys)")
    vae = VQVAE(tok_cfg)
    load_strict(vae, raw, f"{path} (as a {preset} tokenizer)")
    return vae


def make_sampler(sampler: str, train_config: Any):
    """DDIM or DPM-Solver++ (2nd order, multistep) from a ``DDPMScheduler`` config (diffusers)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if sampler not in SAMPLERS:
        raise UserError(f"sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if sampler == "ddim":
        return DDIMScheduler.from_config(train_config, set_alpha_to_one=True, timestep_spacing="trailing")
    return DPMSolverMultistepScheduler.from_config(train_config, algorithm_type="dpmsolver++", solver_order=2,
                                                   timestep_spacing="trailing")


def train_schedule(train_timesteps: int = 1000, beta_schedule: str = "scaled_linear",
                   prediction_type: str = "epsilon"):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=train_timesteps, beta_schedule=beta_schedule, clip_sample=False,
                         prediction_type=prediction_type)


@torch.no_grad()
def denoise(denoiser: Callable[..., torch.Tensor], scheduler: Any, cond_BChw: torch.Tensor, steps: int,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Run ``scheduler`` for ``steps`` denoiser passes from pure noise (drawn on the CPU from ``generator``)."""
    scheduler.set_timesteps(steps, device=cond_BChw.device)
    x_BChw = torch.randn(cond_BChw.shape, generator=generator, device="cpu").to(cond_BChw)
    x_BChw = x_BChw * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x_BChw, t)
        output = denoiser(model_in, t.to(cond_BChw.device).expand(x_BChw.shape[0]), cond_BChw)
        x_BChw = scheduler.step(output.to(x_BChw.dtype), t, x_BChw).prev_sample
    return x_BChw


@register_baseline("ldm")
class LatentDiffusionRestorer(BaselineModule):
    """Latent diffusion restorer: DiT denoiser conditioned on the degraded latent, DDIM / DPM-Solver sampling.

    Args:
        tokenizer_ckpt: the frozen tokenizer (see :func:`load_tokenizer`); None builds a random one.
        tokenizer_preset: tokenizer sizes for raw weights / no file: ``tiny``, ``vq_f16_256``, ``vq_f16_512``.
        tokenizer_config: explicit tokenizer fields (written into checkpoints; wins over the preset).
        denoiser: DiT sizes and conditioning (``concat`` or ``cross``); None: ``DenoiserConfig.tiny()``.
        train_timesteps: diffusion steps of the training schedule.
        beta_schedule: diffusers beta schedule (``scaled_linear`` as in latent diffusion, ``linear``, ...).
        sampler: ``ddim`` or ``dpm_solver`` (DPM-Solver++ multistep) for restoration.
        sampling_steps: denoiser evaluations per image when ``restore_images`` is not told otherwise.
        prediction_type: what the denoiser predicts: ``epsilon`` (noise), ``sample`` (the clean latent) or
            ``v_prediction``; the samplers follow it.
        residual_on_condition: with ``sample``, the denoiser predicts the clean latent minus the degraded one
            (residual restoration, as residual-shifting diffusion restorers do), so it starts from the degraded
            latent; the same switch as the CPU RestoreVAR recipe's ``residual_from_degraded`` refiner.
        optimizer: injected optimizer (AdamW lr 2e-4 if None).
        condition_dropout: probability that a training sample's degraded latent (and context) is replaced by
            zeros, so the denoiser also learns to generate clean latents unconditionally (the pre-training of the
            shipped CPU denoiser, ``rvar/demo/asset.py``). 0: never.
        init_from: an ``ldm`` baseline checkpoint whose denoiser weights and latent scale to start from (same
            denoiser sizes; the tokenizer is the one given here).
    """

    name = "ldm"

    def __init__(self, tokenizer_ckpt: Optional[str] = None, tokenizer_preset: str = "vq_f16_256",
                 tokenizer_config: Optional[Dict[str, Any]] = None, denoiser: Optional[DenoiserConfig] = None,
                 train_timesteps: int = 1000, beta_schedule: str = "scaled_linear", sampler: str = "ddim",
                 sampling_steps: int = 50, prediction_type: str = "epsilon", residual_on_condition: bool = False,
                 optimizer: Optional[OptimizerCallable] = None, condition_dropout: float = 0.0,
                 init_from: Optional[str] = None) -> None:
        super().__init__(optimizer)
        if not 0.0 <= condition_dropout < 1.0:
            raise UserError(f"condition_dropout must be in [0, 1), got {condition_dropout}")
        self.condition_dropout, self.init_from = float(condition_dropout), init_from
        if sampler not in SAMPLERS:
            raise UserError(f"sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if prediction_type not in PREDICTION_TYPES:
            raise UserError(f"prediction_type {prediction_type!r}: choose one of {', '.join(PREDICTION_TYPES)}")
        if residual_on_condition and prediction_type != "sample":
            raise UserError("residual_on_condition needs prediction_type: sample")
        self.prediction_type, self.residual_on_condition = prediction_type, bool(residual_on_condition)
        self.train_timesteps, self.beta_schedule = int(train_timesteps), beta_schedule
        self.sampler, self._sampling_steps = sampler, int(sampling_steps)
        # 1. frozen tokenizer (its weights are saved in every checkpoint, so the file is not needed again)
        self.tokenizer = load_tokenizer(tokenizer_ckpt, tokenizer_preset, tokenizer_config)
        self.tokenizer.requires_grad_(False).eval()
        # 2. denoiser in the tokenizer's latent
        denoiser = denoiser or DenoiserConfig.tiny()
        if denoiser.z_channels != self.tokenizer.config.z_channels:
            raise UserError(f"denoiser.z_channels {denoiser.z_channels} != tokenizer z_channels "
                            f"{self.tokenizer.config.z_channels}")
        self.denoiser = LatentDiT(denoiser)
        # 3. latent scale (1 / std of clean latents), measured on the first training batch and then saved
        self.register_buffer("latent_scale", torch.zeros(()))
        self._train_scheduler = None
        if init_from is not None:
            self._load_init(init_from)

    def _load_init(self, path: str) -> None:
        """Denoiser weights and latent scale of the ``ldm`` checkpoint ``path`` (read weights-only)."""
        from rvar.nn.checkpoints import load_checkpoint, load_strict, sub_state_dict

        ckpt = load_checkpoint(path, kinds=("baseline",))
        load_strict(self.denoiser, sub_state_dict(ckpt["state_dict"], "denoiser."), path)
        self.latent_scale.copy_(ckpt["state_dict"]["latent_scale"])

    # ---- restore interface ---------------------------------------------------------------------------
    @property
    def native_size(self) -> int:  # type: ignore[override]
        return self.tokenizer.image_size

    @property
    def sampling_steps(self) -> int:
        return self._sampling_steps

    @property
    def uses_context(self) -> bool:
        return self.denoiser.config.context

    def init_args(self) -> Dict[str, Any]:
        return {"tokenizer_ckpt": None, "tokenizer_config": self.tokenizer.config.to_dict(),
                "tokenizer_preset": "vq_f16_256", "denoiser": self.denoiser.config.to_dict(),
                "train_timesteps": self.train_timesteps, "beta_schedule": self.beta_schedule,
                "sampler": self.sampler, "sampling_steps": self._sampling_steps,
                "prediction_type": self.prediction_type, "residual_on_condition": self.residual_on_condition}

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: dropout off whatever the trainer does
        return self

    # ---- schedules (diffusers) -----------------------------------------------------------------------
    def training_scheduler(self):
        if self._train_scheduler is None:
            self._train_scheduler = train_schedule(self.train_timesteps, self.beta_schedule, self.prediction_type)
        return self._train_scheduler

    def sampling_scheduler(self, sampler: Optional[str] = None):
        """A fresh DDIM or DPM-Solver++ scheduler sharing the training schedule's betas."""
        return make_sampler(sampler or self.sampler, self.training_scheduler().config)

    # ---- latents -------------------------------------------------------------------------------------
    def scale(self) -> torch.Tensor:
        return torch.where(self.latent_scale > 0, self.latent_scale, torch.ones_like(self.latent_scale))

    @torch.no_grad()
    def encode(self, images_B3HW_01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> scaled continuous latents (B, Cv, h, w)."""
        return self.tokenizer.encode_continuous(to_signed(images_B3HW_01.float())) * self.scale()

    def training_loss(self, batch: Dict[str, Any]) -> torch.Tensor:
        if self.latent_scale <= 0 and self.training:
            with torch.no_grad():
                std = self.tokenizer.encode_continuous(to_signed(batch["clean"].float())).std()
                self.latent_scale.fill_(float(1.0 / std.clamp_min(1e-4)))
        z0_BChw, cond_BChw = self.encode(batch["clean"]), self.encode(batch["degraded"])
        context_BChw = None
        if self.uses_context:
            if "context" not in batch:
                raise UserError("denoiser.context needs whole-image context in the batches: set "
                                "data.init_args.context_size (e.g. 256)")
            context_BChw = self.encode(batch["context"])
        if self.training and self.condition_dropout > 0:
            keep_B111 = (torch.rand(cond_BChw.shape[0], 1, 1, 1, device=cond_BChw.device) >= self.condition_dropout)
            cond_BChw = cond_BChw * keep_B111
            context_BChw = None if context_BChw is None else context_BChw * keep_B111
        scheduler = self.training_scheduler()
        noise = torch.randn_like(z0_BChw)
        t_B = torch.randint(0, self.train_timesteps, (z0_BChw.shape[0],), device=z0_BChw.device)
        zt_BChw = scheduler.add_noise(z0_BChw, noise, t_B)
        if self.prediction_type == "sample":
            target = z0_BChw
        elif self.prediction_type == "v_prediction":
            target = scheduler.get_velocity(z0_BChw, noise, t_B)
        else:
            target = noise
        return F.mse_loss(self.predict(zt_BChw, t_B, cond_BChw, context_BChw).float(), target)

    def predict(self, zt_BChw: torch.Tensor, t_B: torch.Tensor, cond_BChw: torch.Tensor,
                context_BChw: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The denoiser's output in the scheduler's parameterisation (plus the condition when residual)."""
        whole = () if context_BChw is None else (context_BChw,)  # denoisers without context take three
        out = self.denoiser(zt_BChw, t_B, cond_BChw, *whole)
        return out + cond_BChw if self.residual_on_condition else out

    @torch.no_grad()
    def sample_latent(self, cond_BChw: torch.Tensor, steps: int, sampler: Optional[str] = None,
                      generator: Optional[torch.Generator] = None,
                      context_BChw: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Denoise from pure noise in ``steps`` denoiser passes; returns the scaled clean latent."""
        def predict(zt_BChw, t_B, c_BChw):
            return self.predict(zt_BChw, t_B, c_BChw, context_BChw)

        return denoise(predict, self.sampling_scheduler(sampler), cond_BChw, steps, generator)

    @torch.no_grad()
    def restore_images(self, degraded_B3HW_01: torch.Tensor, steps: Optional[int] = None,
                       sampler: Optional[str] = None, seed: int = 0,
                       context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Restore images in [0, 1] at the tokenizer's native size; noise comes from ``seed``. ``context``: the
        whole images these are tiles of, resized to the native size (None: each input is a whole image)."""
        cond_BChw = self.encode(degraded_B3HW_01)
        context_BChw = None
        if self.uses_context:
            context_BChw = cond_BChw if context is None else self.encode(context)
        generator = torch.Generator().manual_seed(seed)
        z_BChw = self.sample_latent(cond_BChw, int(steps or self._sampling_steps), sampler, generator, context_BChw)
        return to_unit(self.tokenizer.decode((z_BChw / self.scale()).float()))
