"""The quality ladder: where a RestoreVAR restorer's dB go, stage by stage (RestoreVAR's ablation).

For one restorer checkpoint and a set of (degraded, clean) test images, each rung is scored with PSNR/SSIM
against the clean image, every image going through the same any-size path as ``rvar restore``:

1. ``VQ round trip (clean)``: the tokenizer's quantised reconstruction of the clean image, the ceiling of the
   prior's tokens;
2. ``continuous round trip (clean)``: ``decode(quant_conv(encoder(clean)))``, the ceiling of the refiner's path;
3. ``prior only``: the decoded sample of the prior (greedy or expected codewords, ``PriorConfig.decoding``);
4. ``+ refiner``: the refined continuous latent, decoded; ``+ refiner + fine-tuned decoder`` when the checkpoint's
   decoder was fine-tuned on continuous latents (its full output).
5. ``full, another photo's prior``: the full output when every tile's refiner gets the prior's outputs (tokens
   and last-block states) for another test photo (the next sample's degraded image, resized to the native size)
   instead of its own: what the rung loses against rung 4 is what the refiner takes from the prior about *this*
   photo. A refiner that ignored the prior would lose nothing.

``degraded input`` scores the inputs themselves on the same images, the floor of every rung (the ladder may score
fewer photos than the comparison, ``rvar compare --ladder-images``).

Rungs 1-2 score the clean images (degradation ``clean``); rungs 3-4 each degradation and ``overall``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

from rvar.nn.restorer import Restorer
from rvar.pixels import to_signed, to_unit

RUNGS = ("VQ round trip (clean)", "continuous round trip (clean)", "prior only", "+ refiner",
         "+ refiner + fine-tuned decoder", "full, another photo's prior", "degraded input")
FIELDS = ("label", "stage", "degradation", "images", "psnr", "ssim")


@dataclass
class LadderModel:
    label: str
    restorer: Restorer
    finetuned_decoder: bool


def load_ladder_model(path: str, label: str) -> LadderModel:
    from rvar.nn.checkpoints import build_restorer, load_checkpoint

    ckpt = load_checkpoint(path, kinds=("restorer", "prior"))
    restorer = build_restorer(ckpt, str(path)).eval()
    return LadderModel(label, restorer, (ckpt.get("meta") or {}).get("decoder") == "finetuned")


def _signed(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """An image function on [-1, 1] as one on [0, 1]."""
    return lambda x01: to_unit(fn(to_signed(x01)))


def round_trip_functions(tok) -> Dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Rungs 1-2 (a tokenizer's VQ and continuous round trips) as image functions on [0, 1] batches."""
    return {RUNGS[0]: _signed(tok.reconstruct),
            RUNGS[1]: _signed(lambda x: tok.decode(tok.encode_continuous(x)))}


def _under(precision: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` run under ``precision``'s autocast (fp32: as is), its output back in fp32."""
    if precision == "fp32":
        return fn
    from rvar.inference import autocast

    def wrapped(x: torch.Tensor, *rest, **kwargs) -> torch.Tensor:
        with autocast(precision, x.device):
            return fn(x, *rest, **kwargs).float()

    wrapped.takes_context = getattr(fn, "takes_context", False)
    return wrapped


def rung_functions(model: LadderModel, precision: str = "fp32") -> Dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Rung name -> image function on [0, 1] batches at the restorer's native size, run under ``precision``
    (fp32 or bf16)."""
    from rvar.inference import restorer_fn

    r = model.restorer
    tok = r.tokenizer
    trips = round_trip_functions(tok)
    rungs = {**{k: _under(precision, f) for k, f in trips.items()}, RUNGS[6]: lambda x: x,
             RUNGS[2]: _under(precision, _signed(lambda x: tok.decode(r.restore(x).f_hat.float())))}
    if r.refiner is not None:  # the full restorer, no input path
        rungs[RUNGS[4] if model.finetuned_decoder else RUNGS[3]] = restorer_fn(r, precision=precision, fidelity=0.0)
        if r.refiner.config.reads_prior:
            rungs[RUNGS[5]] = None  # made per sample by :func:`quality_ladder` (it needs the other photo)
    return rungs


def other_photo_fn(restorer: Restorer, other01_3HW: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The full restorer whose prior samples ``other01_3HW`` (resized to the native size) for every input tile."""
    from rvar.pixels import whole_image_context

    other = to_signed(whole_image_context(other01_3HW[None], restorer.image_size))

    def fn(x01: torch.Tensor, context=None) -> torch.Tensor:
        with torch.inference_mode():
            out = restorer.restore(to_signed(x01), prior_from_B3HW=other.to(x01), fidelity=0.0,
                                   context_B3HW=None if context is None else to_signed(context))
        return to_unit(out.image)

    fn.takes_context = restorer.uses_context
    return fn


def quality_ladder(models: Sequence[LadderModel], samples: Sequence, seed: int = 0, policy: str = "tile",
                   precision: str = "fp32") -> List[Dict]:
    """Mean PSNR/SSIM per (model, rung, degradation); ``samples`` have ``degraded``, ``clean``, ``degradation``,
    ``name`` (``rvar.eval.compare.Sample``). ``precision``: fp32 or bf16 (autocast around the networks)."""
    from rvar.inference import apply_any_size
    from rvar.eval.metrics import mean, psnr_per_image, ssim_per_image

    table = []
    for model in models:
        native = model.restorer.image_size
        for rung, fn in rung_functions(model, precision).items():
            on_clean = rung in RUNGS[:2]
            seen, groups = set(), defaultdict(list)
            for number, sample in enumerate(samples):
                if on_clean and sample.name in seen:
                    continue
                seen.add(sample.name)
                if rung == RUNGS[5]:
                    others = [s for s in samples if s.name != sample.name] or [sample]
                    fn = _under(precision, other_photo_fn(model.restorer, others[number % len(others)].degraded))
                torch.manual_seed(seed + number)
                with torch.inference_mode():
                    out = apply_any_size(fn, sample.clean if on_clean else sample.degraded, native, policy=policy,
                                         batch_size=16)
                pred, target = out[None].clamp(0, 1), sample.clean[None]
                scores = (float(psnr_per_image(pred, target)[0]), float(ssim_per_image(pred, target)[0]))
                groups["clean" if on_clean else sample.degradation].append(scores)
                if not on_clean:
                    groups["overall"].append(scores)
            for degradation, scores in groups.items():
                table.append({"label": model.label, "stage": rung, "degradation": degradation,
                              "images": len(scores), "psnr": mean(p for p, _ in scores),
                              "ssim": mean(s for _, s in scores)})
    return table


def write_ladder(out_dir: Path, table: List[Dict], results_md: Path) -> None:
    """``ladder.csv`` and a "Quality ladder" section appended to ``results_md``."""
    from rvar.eval.results import write_results

    write_results(out_dir / "ladder.csv", table, FIELDS)
    lines = ["", "## Quality ladder (PSNR dB / SSIM; RestoreVAR stage by stage)", ""]
    degradations = sorted({r["degradation"] for r in table} - {"clean", "overall"}) + ["overall"]
    lines += ["| checkpoint | stage | " + " | ".join(degradations) + " |",
              "|---|---|" + "---|" * len(degradations)]
    for label in dict.fromkeys(r["label"] for r in table):
        for rung in (*RUNGS[:2], RUNGS[6], *RUNGS[2:6]):
            rows = {r["degradation"]: r for r in table if r["label"] == label and r["stage"] == rung}
            if not rows:
                continue
            if "clean" in rows:
                cells = [f"{rows['clean']['psnr']:.2f} / {rows['clean']['ssim']:.3f}"] * len(degradations)
            else:
                cells = [f"{rows[d]['psnr']:.2f} / {rows[d]['ssim']:.3f}" if d in rows else "-" for d in degradations]
            lines.append(f"| {label} | {rung} | " + " | ".join(cells) + " |")
    lines.append("")
    with open(results_md, "a") as handle:
        handle.write("\n".join(lines))
