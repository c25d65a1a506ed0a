"""The end-to-end RestoreVAR restorer: tokenizer -> prior (greedy, KV cache) -> refiner -> decoder.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), figure 2. Reference code:
sudraj2002/RestoreVAR ``models/var.py`` (``autoregressive_infer_cfg``).

Images are (B, 3, H, W) in [-1, 1] at the tokenizer's native size; :mod:`rvar.inference` handles other sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from rvar.nn.fidelity import FidelityConfig, FidelityGate
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.refiner import LatentRefiner, RefinerConfig
from rvar.nn.tokenizer import VQVAE, TokenizerConfig


@dataclass
class RestoreOutput:
    image: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    f_hat: torch.Tensor  # (B, Cv, h, w) quantised latent from the prior
    f_refined: torch.Tensor  # (B, Cv, h, w) continuous latent after the refiner (== f_hat without one)
    round_trip: Optional[torch.Tensor] = None  # (B, 3, H, W) the input's round trip, when the fidelity path ran or
    # ``keep_round_trip`` asked for it


class Restorer(nn.Module):
    """Holds the three networks; ``refiner`` may be None (a prior-only stage). The prior takes the
    tokenizer's geometry (:meth:`PriorConfig.for_tokenizer`). ``gate``: an optional learned fidelity path
    (:mod:`rvar.nn.fidelity`, not in the published model) that passes input detail to the output."""

    def __init__(self, tokenizer: TokenizerConfig, prior: PriorConfig, refiner: Optional[RefinerConfig] = None,
                 gate: Optional[FidelityConfig] = None) -> None:
        super().__init__()
        self.tokenizer = VQVAE(tokenizer)
        self.prior = RestoreVARPrior(PriorConfig.for_tokenizer(tokenizer, **prior.to_dict()))
        self.refiner = LatentRefiner(refiner) if refiner is not None else None
        self.gate = FidelityGate(gate) if gate is not None else None

    @classmethod
    def from_networks(cls, tokenizer: VQVAE, prior: RestoreVARPrior, refiner: Optional[LatentRefiner] = None,
                      gate: Optional[FidelityGate] = None):
        """A restorer around networks that exist already (no new weights are drawn)."""
        restorer = cls.__new__(cls)
        nn.Module.__init__(restorer)
        restorer.tokenizer, restorer.prior, restorer.refiner, restorer.gate = tokenizer, prior, refiner, gate
        return restorer

    def init_args(self) -> Dict[str, Any]:
        """The constructor's arguments as dicts: a checkpoint's ``model.init_args`` (:mod:`rvar.nn.checkpoints`)."""
        args = {"tokenizer": self.tokenizer.config.to_dict(), "prior": self.prior.config.to_dict(),
                "refiner": self.refiner.config.to_dict() if self.refiner is not None else None}
        if self.gate is not None:  # files without a gate keep their old description
            args["gate"] = self.gate.config.to_dict()
        return args

    @property
    def image_size(self) -> int:
        return self.tokenizer.image_size

    @property
    def uses_context(self) -> bool:
        return self.refiner is not None and self.refiner.uses_context

    @torch.no_grad()
    def restore(self, degraded_B3HW: torch.Tensor, top_k: int = 0, top_p: float = 0.0, temperature: float = 1.0,
                generator: Optional[torch.Generator] = None, use_cache: bool = True,
                context_B3HW: Optional[torch.Tensor] = None, fidelity: Optional[float] = None,
                prior_from_B3HW: Optional[torch.Tensor] = None, keep_round_trip: bool = False) -> RestoreOutput:
        """``context_B3HW``: the whole degraded image resized to the native size, for a refiner that reads it
        (``uses_context``) when ``degraded_B3HW`` are tiles of a larger image; None: the input is the whole image.

        ``fidelity`` (0: off, as published). Without a gate it adds that fraction of what the tokenizer's continuous
        round trip loses on the *input*, ``degraded - decode(encode(degraded))``, to the output: the detail no
        latent of this size carries (fine texture of a clean or mildly degraded photo) passes straight from the
        input to the output, and so does the same fraction of any fine-grained degradation (noise, thin rain).
        With a learned gate (``self.gate``) it scales the gate's correction (1: as trained). None: 1 with a gate,
        0 without.

        ``prior_from_B3HW`` (a diagnostic, see :mod:`rvar.eval.ladder`): sample the prior on this image (one image, or
        one per input) instead of the input, so the refiner gets another photo's prior outputs; the rest of the
        pipeline reads the input as usual."""
        cond = self.tokenizer.encode_condition(degraded_B3HW)
        if self.refiner is not None and not self.refiner.config.reads_prior:
            out = self.prior.placeholder(cond)  # the no-prior ablation never samples the prior
        else:
            prior_cond = cond
            if prior_from_B3HW is not None:
                prior_cond = self.tokenizer.encode_condition(prior_from_B3HW).expand(cond.shape[0], -1, -1)
            out = self.prior.sample(prior_cond, self.tokenizer.quantize, top_k, top_p, temperature, generator,
                                    use_cache)
        f_hat = out.f_hat
        if self.refiner is None:
            f_ref = f_hat
        else:
            B, C, h, w = f_hat.shape
            degraded = self.tokenizer.condition_to_continuous(cond).float() if self.refiner.uses_degraded else None
            context = None
            if self.refiner.uses_context:
                whole = cond if context_B3HW is None else self.tokenizer.encode_condition(context_B3HW)
                context = self.tokenizer.condition_to_continuous(whole).float().expand(B, -1, -1)
            tokens = self.refiner(f_hat.flatten(2).transpose(1, 2).float(), out.last_block.float(), degraded, context)
            f_ref = tokens.transpose(1, 2).reshape(B, C, h, w)
        image = self.tokenizer.decode(f_ref.float())
        if fidelity is None:
            fidelity = 1.0 if self.gate is not None else 0.0
        round_trip = self.round_trip(cond) if fidelity or keep_round_trip else None
        if fidelity and self.gate is not None:
            image = self.gate(degraded_B3HW.float(), image.float(), round_trip, fidelity).clamp(-1, 1)
        elif fidelity:
            image = (image + fidelity * (degraded_B3HW.float() - round_trip)).clamp(-1, 1)
        return RestoreOutput(image, f_hat, f_ref, round_trip)

    def round_trip(self, cond_BSCv: torch.Tensor) -> torch.Tensor:
        """The decoded continuous latent of an input (its ``encode_condition``): (B, 3, H, W) in [-1, 1], what the
        tokenizer keeps of it without quantisation."""
        side = self.prior.patch_nums[-1]
        latent = self.tokenizer.condition_to_continuous(cond_BSCv).float().transpose(1, 2).unflatten(2, (side, side))
        return self.tokenizer.decode(latent).float()
