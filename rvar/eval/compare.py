"""Scoring for ``rvar compare``: load the contenders, prepare the test images, restore and score them.

Every checkpoint (RestoreVAR restorers and baselines, in any mix) and the degraded input itself (the floor every
restorer must beat) restore the same images through the any-size path of ``rvar restore``, timed per image and
scored under an evaluation protocol (:mod:`rvar.eval.protocol`); :func:`aggregate` averages the per-image rows per
(model, degradation) and overall. The files these results become are :mod:`rvar.eval.results`'s; the command
(:mod:`rvar.commands.compare`) parses the arguments, calls both and logs to MLflow.

Shapes: S image side.
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from rvar.errors import UserError


# ---- 1. models ----------------------------------------------------------------------------------------------
@dataclass
class Contender:
    label: str
    path: str
    model: object  # rvar.inference.LoadedModel
    parameters: int
    steps: int


def _labels(paths: Sequence[str], given: Optional[str]) -> List[str]:
    if given:
        labels = [s.strip() for s in given.split(",")]
        if len(labels) != len(paths) or len(set(labels)) != len(labels):
            raise UserError("--labels needs one distinct label per checkpoint")
        return labels
    labels, seen = [], defaultdict(int)
    for path in paths:
        stem = Path(path).stem
        parent = Path(path).parent.name
        base = f"{parent}/{stem}" if stem in ("last", "model", "best") or stem.startswith(("best-", "epoch=")) \
            else stem
        seen[base] += 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


def load_contenders(paths: Sequence[str], labels: Optional[str], steps: Optional[int],
                    fidelity: Optional[float] = None, decoding: Optional[str] = None,
                    precision: str = "fp32") -> List[Contender]:
    """Load every checkpoint first, so a bad one fails before anything is written. ``precision``: fp32 or bf16
    (autocast around each model's forward passes)."""
    from rvar.inference import load_restoration_model
    from rvar.nn import count_parameters

    out = []
    for label, path in zip(_labels(paths, labels), paths):
        model = load_restoration_model(path, torch.device("cpu"), precision, steps=steps, fidelity=fidelity,
                                       decoding=decoding)
        module = model.module
        if model.kind == "baseline":
            own = int(getattr(module, "sampling_steps", 1))
            n_steps = int(steps) if steps and own > 1 else own  # --steps only changes iterative samplers
        else:
            n_steps = len(module.prior.patch_nums)  # one transformer pass per scale
        out.append(Contender(label, str(path), model, count_parameters(module), n_steps))
    return out


INPUT_LABEL = "degraded input"
EMBEDDED = {"embedded-test": "test", "embedded-val": "val"}


def input_contender() -> Contender:
    """The degraded images themselves, scored like a model: the floor every restorer must beat."""
    from rvar.inference import LoadedModel

    identity = LoadedModel(fn=lambda x: x, native=None, kind="input", description=INPUT_LABEL,
                           module=torch.nn.Identity())
    return Contender(INPUT_LABEL, "-", identity, 0, 0)


def load_ladder_models(contenders: List[Contender], extra: Sequence[str]) -> list:
    """The RestoreVAR contenders (and ``extra`` checkpoints) as ladder models, loaded before any work."""
    from rvar.eval.ladder import load_ladder_model

    def reads_prior(module) -> bool:  # the no-prior ablation has no prior rung to show
        refiner = getattr(module, "refiner", None)
        return refiner is None or refiner.config.reads_prior

    models = [load_ladder_model(c.path, c.label) for c in contenders
              if c.model.kind in ("restorer", "prior") and reads_prior(c.model.module)]
    labels = {c.label for c in contenders}
    for path in extra:
        label = Path(path).stem
        while label in labels:
            label += "'"
        labels.add(label)
        models.append(load_ladder_model(path, label))
    return models


# ---- 2. test images -----------------------------------------------------------------------------------------
@dataclass
class Sample:
    name: str
    degradation: str
    degraded: torch.Tensor  # (3, S, S) in [0, 1]
    clean: torch.Tensor


def centre_crop(image_3HW: torch.Tensor, size: int, path: Path) -> torch.Tensor:
    from rvar.data.datasets import crop, fit_crop

    return crop(fit_crop(image_3HW, size, path), size)


@dataclass
class DegradationSpec:
    label: str  # as given, e.g. ``jpeg:quality=12``
    name: str
    options: Dict[str, object]  # a fixed strength ``v`` as the range ``[v, v]``


def load_samples(data: str, specs: List[DegradationSpec], size: int, seed: int, max_images: Optional[int],
                 protocol: str = "native") -> List[Sample]:
    """The test set as (degraded, clean) images of side ``size``: centre crops, or for the ``restorevar``
    protocol Lanczos resizes (pairs resized alike; clean images resized, then degraded)."""
    from rvar.data.datasets import load_pairs, scan_clean_folders, source_kind
    from rvar.data.degrade import make_degradation, sample_seed
    from rvar.data.embedded import ensure_embedded
    from rvar.io import read_image
    from rvar.data.evaluation import lanczos_resize, paired_resize

    resize = protocol == "restorevar"
    kind, folder = (("clean", ensure_embedded() / EMBEDDED[data]) if data in EMBEDDED
                    else (source_kind(data), Path(data)))
    samples: List[Sample] = []
    if kind == "clean":
        paths = scan_clean_folders([folder])[: max_images or None]
        cleans = [lanczos_resize(read_image(p).rgb, size) if resize else centre_crop(read_image(p).rgb, size, p)
                  for p in paths]
        for spec in specs:
            op = make_degradation(spec.name, spec.options)
            for number, (path, clean) in enumerate(zip(paths, cleans)):
                generator = torch.Generator().manual_seed(sample_seed(seed, spec.label, number))
                degraded = op(clean[None], generator)[0].clamp(0, 1)
                samples.append(Sample(path.stem, spec.label, degraded, clean))
        return samples
    for entry in load_pairs([data])[: max_images or None]:
        degraded, clean = read_image(entry.input_path).rgb, read_image(entry.target_path).rgb
        if resize:
            degraded, clean = paired_resize(degraded, clean, size)
        else:
            both = centre_crop(torch.cat([degraded, clean]), size, entry.input_path)
            degraded, clean = both[:3], both[3:]
        samples.append(Sample(entry.input_path.stem, entry.degradation, degraded, clean))
    return samples


# ---- 3. running and scoring ---------------------------------------------------------------------------------
def evaluate(contenders: List[Contender], samples: List[Sample], seed: int, policy: str = "tile",
             protocol: str = "native"):
    """Per model and sample: restored image, seconds, PSNR, SSIM, LPIPS (or None), scored as ``protocol`` says,
    and the mean CIEDE2000 colour difference to the clean image."""
    from tqdm import tqdm

    from rvar.eval.metrics import ciede2000_per_image
    from rvar.inference import apply_any_size
    from rvar.eval.protocol import EvalProtocol, ProtocolScorer

    scorer = ProtocolScorer(EvalProtocol.named(protocol))
    rows, images = [], {}
    for contender in contenders:
        model = contender.model
        torch.manual_seed(seed)
        with torch.inference_mode():  # warm-up (lazy allocations, first-call kernels): not timed
            apply_any_size(model.fn, samples[0].degraded, model.native, policy="resize")
        for number, sample in enumerate(tqdm(samples, desc=contender.label, unit="image", file=sys.stderr)):
            torch.manual_seed(seed + number)
            start = time.perf_counter()
            with torch.inference_mode():
                restored = apply_any_size(model.fn, sample.degraded, model.native, policy=policy, batch_size=16)
            seconds = time.perf_counter() - start
            scores = scorer(restored[None].clamp(0, 1), sample.clean[None])
            scores["ciede2000"] = ciede2000_per_image(restored[None], sample.clean[None])
            rows.append({"model": contender.label, "degradation": sample.degradation, "image": sample.name,
                         **{name: None if value is None else float(value[0]) for name, value in scores.items()},
                         "seconds": seconds})
            images[(contender.label, number)] = restored
    return rows, images


def aggregate(rows: List[Dict], contenders: List[Contender]) -> List[Dict]:
    """Mean metrics per (model, degradation) and per model over everything (degradation ``overall``)."""
    from rvar.eval.metrics import mean

    groups: Dict[tuple, List[Dict]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["degradation"])].append(row)
        groups[(row["model"], "overall")].append(row)
    degradations = sorted({r["degradation"] for r in rows}) + ["overall"]
    table = []
    for contender in contenders:
        for degradation in degradations:
            group = groups.get((contender.label, degradation))
            if not group:
                continue
            table.append({"model": contender.label, "degradation": degradation, "images": len(group),
                          **{name: mean(r[name] for r in group) for name in ("psnr", "ssim", "lpips", "ciede2000")},
                          "seconds_per_image": mean(r["seconds"] for r in group),
                          "parameters": contender.parameters, "sampling_steps": contender.steps})
    return table
