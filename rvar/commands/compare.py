"""``rvar compare``: run restorers and baselines on the same test images; tables, grids, a plot, MLflow."""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from rvar.data.degrade import DEFAULT_DEGRADATIONS
from rvar.errors import UserError

HELP = "compare restorers and baselines on one test set: PSNR/SSIM/LPIPS, time, grids, plot, MLflow"
DESCRIPTION = """Run every checkpoint (RestoreVAR restorers and baselines, in any mix) on the same images and write
OUTDIR/results.md and results.csv (per degradation and overall: PSNR, SSIM, LPIPS when its weights are present,
seconds per image, parameters, sampling steps), OUTDIR/grid_<degradation>.png (degraded | each model | clean)
and OUTDIR/quality_vs_time.png; the same files and metrics go to an MLflow run (MLFLOW_TRACKING_URI, default
sqlite:///mlflow.db). Images are centre-cropped to --size (default 256 px) and restored through the same
any-size path as `rvar restore` (--size-policy, default tile), so a 64 px model restores 256 px crops tile by tile.

For RestoreVAR checkpoints, OUTDIR/ladder.csv and a section of results.md give the quality ladder (where the dB go):
the tokenizer's VQ and continuous round trips of the clean image (the ceilings), the prior alone, + refiner, and
+ fine-tuned decoder, per degradation. --ladder-from adds checkpoints scored for the ladder only (the demo passes
the restorer before decoder fine-tuning).

--data is `embedded-test` (photos no rvar training stage ever sees, degraded with --degradations),
`embedded-val`, a folder of clean images (degraded likewise), a paired folder (input/ + target/) or a RestoreVAR
JSON manifest. --degradations is a comma-separated list of registered names, each optionally with fixed
strengths: `gaussian_noise:sigma=25`, `jpeg:quality=12`, `haze:beta=1.5:airlight=0.9`. Degradations are
reproducible from --seed. A bad checkpoint or data path stops before anything is written.

example:
  rvar compare outputs/demo/restorevar.ckpt outputs/demo/ldm.ckpt outputs/demo/nafnet.ckpt --steps 50 \\
      --degradations haze,rain,snow,low_light,motion_blur,gaussian_noise:sigma=25,jpeg:quality=12 -o cmp
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="restorer / baseline checkpoints")
    parser.add_argument("--data", default="embedded-test",
                        help="embedded-test | embedded-val | clean folder | paired folder | manifest .json "
                             "(default embedded-test: photos no training stage sees)")
    parser.add_argument("--degradations", "-d", default=",".join(DEFAULT_DEGRADATIONS),
                        help="comma-separated degradations for clean test sets, each NAME or NAME:KEY=VALUE[:...] "
                             "(fixed strengths), or 'all'")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the degradations and samplers")
    parser.add_argument("--output", "-o", required=True, help="output folder")
    parser.add_argument("--steps", type=int, help="sampling steps of diffusion baselines (default: their own)")
    parser.add_argument("--max-images", type=int, help="at most this many images (per degradation for clean sets)")
    parser.add_argument("--size", type=int, help="image side in pixels: the centre crop (default 256), or the Lanczos "
                                                 "resize of --protocol restorevar (default 512)")
    parser.add_argument("--size-policy", choices=("tile", "resize"), default="tile",
                        help="how models of a smaller native size restore the crops (default tile, as rvar restore)")
    parser.add_argument("--ladder", action=argparse.BooleanOptionalAction, default=True,
                        help="quality ladder of RestoreVAR checkpoints (default on)")
    parser.add_argument("--ladder-from", nargs="*", default=[], metavar="CKPT",
                        help="further RestoreVAR checkpoints scored for the ladder only")
    parser.add_argument("--labels", help="comma-separated model labels (default: checkpoint file names)")
    parser.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True,
                        help="log to MLflow (default on)")
    parser.add_argument("--experiment", default="rvar-compare", help="MLflow experiment name")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="MLflow run tag (repeatable; `rvar demo` nests its comparison this way)")
    parser.add_argument("--protocol", choices=("native", "restorevar"), default="native",
                        help="native: centre crops at --size, float metrics; restorevar: the paper's (512x512 Lanczos "
                             "pairs, uint8 RGB PSNR/SSIM, LPIPS-Alex, --max-images default 5000); both also write "
                             "table1.md (RestoreVAR's Table 1 layout with the paper's values)")


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


def load_contenders(paths: Sequence[str], labels: Optional[str], steps: Optional[int]) -> List[Contender]:
    """Load every checkpoint first, so a bad one fails before anything is written."""
    from rvar.inference import load_restoration_model
    from rvar.nn import count_parameters

    out = []
    for label, path in zip(_labels(paths, labels), paths):
        model = load_restoration_model(path, torch.device("cpu"), "fp32", steps=steps)
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

    models = [load_ladder_model(c.path, c.label) for c in contenders if c.model.kind in ("restorer", "prior")]
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
    options: Dict[str, object]


def degradation_specs(text: str) -> List[DegradationSpec]:
    """``haze,jpeg:quality=12`` -> specs; a fixed value ``v`` becomes the range ``[v, v]``."""
    from rvar.commands.degrade import parse_names

    specs = []
    for item in ([text] if text.strip() == "all" else [t for t in text.split(",") if t.strip()]):
        name, *settings = [part.strip() for part in item.split(":")]
        options: Dict[str, object] = {}
        for setting in settings:
            key, sep, value = setting.partition("=")
            try:
                number = float(value)
            except ValueError:
                number = None
            if not sep or not key or number is None:
                raise UserError(f"--degradations: {item!r}: write strengths as NAME:KEY=NUMBER, e.g. jpeg:quality=12")
            options[key] = [number, number]
        specs += [DegradationSpec(item.strip() if known == name else known, known, options)
                  for known in parse_names(name)]
    return specs


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
    """Per model and sample: restored image, seconds, PSNR, SSIM, LPIPS (or None), scored as ``protocol`` says."""
    from tqdm import tqdm

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
                          **{name: mean(r[name] for r in group) for name in ("psnr", "ssim", "lpips")},
                          "seconds_per_image": mean(r["seconds"] for r in group),
                          "parameters": contender.parameters, "sampling_steps": contender.steps})
    return table


# ---- 4. outputs ---------------------------------------------------------------------------------------------
FIELDS = ("model", "degradation", "images", "psnr", "ssim", "lpips", "seconds_per_image", "parameters",
          "sampling_steps")


def write_markdown(path: Path, table: List[Dict], header: str) -> None:
    lines = [f"# rvar compare", "", header, ""]
    for degradation in sorted({r["degradation"] for r in table}, key=lambda d: (d == "overall", d)):
        lines += [f"## {degradation}", "",
                  "| model | images | PSNR | SSIM | LPIPS | s / image | parameters | steps |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in table if r["degradation"] == degradation):
            lp = "-" if r["lpips"] is None else f"{r['lpips']:.4f}"
            lines.append(f"| {r['model']} | {r['images']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {lp} | "
                         f"{r['seconds_per_image']:.3f} | {r['parameters'] / 1e6:.2f} M | {r['sampling_steps']} |")
        lines.append("")
    path.write_text("\n".join(lines))


def write_grids(out_dir: Path, contenders: List[Contender], samples: List[Sample], images: Dict) -> List[Path]:
    from rvar.io import save_grid

    contenders = [c for c in contenders if c.label != INPUT_LABEL]  # the grid has a degraded column already
    paths = []
    for degradation in sorted({s.degradation for s in samples}):
        numbers = [n for n, s in enumerate(samples) if s.degradation == degradation]
        rows = [[samples[n].degraded, *[images[(c.label, n)] for c in contenders], samples[n].clean]
                for n in numbers]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", degradation)
        paths.append(save_grid(out_dir / f"grid_{safe}.png", rows, ["degraded", *[c.label for c in contenders],
                                                                     "clean"], [samples[n].name for n in numbers]))
    return paths


def write_samples(out_dir: Path, contenders: List[Contender], samples: List[Sample], images: Dict, rows: List[Dict],
                  per_degradation: int = 2) -> Path:
    """For up to ``per_degradation`` images of each degradation, the degraded input, every model's output and the
    clean image as PNGs under ``OUTDIR/images/``, indexed (with per-image PSNR) in ``OUTDIR/images.json``; the
    report's before/after viewer reads them."""
    import json

    from rvar.io import write_image

    models = [c.label for c in contenders if c.label != INPUT_LABEL]
    psnr = {(r["model"], r["degradation"], r["image"]): r["psnr"] for r in rows}
    index = {"columns": [INPUT_LABEL, *models, "clean"], "samples": []}
    taken: Dict[str, int] = defaultdict(int)
    for number, sample in enumerate(samples):
        if taken[sample.degradation] >= per_degradation:
            continue
        taken[sample.degradation] += 1
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{sample.degradation}_{sample.name}_{taken[sample.degradation]}")
        pictures = {INPUT_LABEL: sample.degraded, **{m: images[(m, number)] for m in models}, "clean": sample.clean}
        files = {label: f"images/{stem}_{column}.png" for column, label in enumerate(pictures)}
        for label, picture in pictures.items():
            write_image(out_dir / files[label], picture.clamp(0, 1))
        scores = {label: round(psnr[(label, sample.degradation, sample.name)], 2) for label in pictures
                  if (label, sample.degradation, sample.name) in psnr}
        index["samples"].append({"image": sample.name, "degradation": sample.degradation, "files": files,
                                 "psnr": scores})
    (out_dir / "images.json").write_text(json.dumps(index, indent=1))
    return out_dir / "images.json"


def _seconds_label(value: float, _position=None) -> str:
    """Tick text of the log time axis: ``20 ms``, ``0.5 s``, ``3 s``."""
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def write_plot(path: Path, table: List[Dict]) -> None:
    """PSNR against seconds per image (log axis). Models are named in a legend beside the axes, so no label can
    sit on another; the degraded input is one dashed line, named once in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    overall = [r for r in table if r["degradation"] == "overall"]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    markers = "osD^vP*X"
    timed = [r for r in overall if r["model"] != INPUT_LABEL]
    for number, r in enumerate(timed):
        ax.scatter(r["seconds_per_image"], r["psnr"], s=50, marker=markers[number % len(markers)], zorder=3,
                   label=f"{r['model']}: {r['psnr']:.2f} dB, {r['sampling_steps']} step(s)")
    for r in overall:
        if r["model"] == INPUT_LABEL:  # no time to plot: a reference line
            ax.axhline(r["psnr"], color="grey", linestyle="--", linewidth=1, label=f"{INPUT_LABEL}: {r['psnr']:.2f} dB")
    ax.set_xscale("log")
    seconds = [r["seconds_per_image"] for r in timed if r["seconds_per_image"] > 0]
    if seconds:  # at least a decade wide, so the major ticks carry the labels
        low, high = min(seconds) / 2, max(seconds) * 2
        if high / low < 10:
            middle = math.sqrt(low * high)
            low, high = middle / math.sqrt(10), middle * math.sqrt(10)
        ax.set_xlim(low, high)
    low, high = ax.get_xlim()
    subs = (1.0,) if math.log10(high / low) > 2.5 else (1.0, 2.0, 5.0)  # 1-2-5 ticks unless that crowds them
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(_seconds_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="time per image (log scale)", ylabel="PSNR (dB), all degradations", title="quality vs time")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def log_mlflow(out_dir: Path, table: List[Dict], params: Dict[str, str], experiment: str,
               tags: Sequence[str] = ()) -> str:
    """Log the metrics and every output file to an MLflow run in the store and artifact root that training uses
    (:mod:`rvar.lit.tracking`); ``tags`` are ``KEY=VALUE`` strings. Returns the run id."""
    import mlflow

    from rvar.lit.tracking import default_run_name, ensure_experiment, resolve_tracking_uri

    bad = [t for t in tags if "=" not in t]
    if bad:
        raise UserError(f"--tag {bad[0]!r}: expected KEY=VALUE")
    mlflow.set_tracking_uri(resolve_tracking_uri())
    experiment_id = ensure_experiment(mlflow.MlflowClient(), experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=default_run_name(params.get("data"), "compare"),
                          tags=dict(t.split("=", 1) for t in tags)) as run:
        mlflow.log_params(params)
        metrics = {}
        for r in table:
            key = re.sub(r"[^A-Za-z0-9_./ -]+", "_", f"{r['model']}/{r['degradation']}")
            for name in ("psnr", "ssim", "lpips", "seconds_per_image"):
                if r[name] is not None and math.isfinite(r[name]):
                    metrics[f"{key}/{name}"] = float(r[name])
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(out_dir))
        return run.info.run_id


def run(args: argparse.Namespace) -> int:
    if args.max_images is not None and args.max_images < 1:
        raise UserError("--max-images must be at least 1")
    if args.data not in EMBEDDED and not Path(args.data).exists():
        raise UserError(f"{args.data}: no such test set (use embedded-test, embedded-val, a folder or a manifest)")
    if args.size is not None and args.size < 16:
        raise UserError("--size must be at least 16 pixels")
    specs = degradation_specs(args.degradations)
    contenders = load_contenders(args.checkpoints, args.labels, args.steps) + [input_contender()]
    ladder_models = load_ladder_models(contenders, args.ladder_from) if args.ladder else []
    restorevar = args.protocol == "restorevar"  # rvar/eval/protocol.py
    size = args.size or (512 if restorevar else 256)
    samples = load_samples(args.data, specs, size, args.seed, (args.max_images or 5000) if restorevar
                           else args.max_images, args.protocol)
    if not samples:
        raise UserError(f"{args.data}: no test images")
    rows, images = evaluate(contenders, samples, args.seed, args.size_policy, args.protocol)
    table = aggregate(rows, contenders)
    from rvar.eval.results import write_results

    if ladder_models:
        from rvar.eval.ladder import quality_ladder, write_ladder

        ladder = quality_ladder(ladder_models, samples, args.seed, args.size_policy)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (f"data `{args.data}`, {len(samples)} image(s) at {size} px ({args.protocol} protocol, "
              f"{args.size_policy} policy), seed {args.seed}, "
              f"degradations {', '.join(sorted({s.degradation for s in samples}))}; CPU, fp32, "
              f"{torch.get_num_threads()} threads; checkpoints: "
              + ", ".join(f"{c.label} = `{c.path}`" for c in contenders))
    write_results(out_dir / "results.csv", table, FIELDS)
    write_markdown(out_dir / "results.md", table, header)
    if ladder_models:
        write_ladder(out_dir, ladder, out_dir / "results.md")
    grids = write_grids(out_dir, contenders, samples, images)
    write_samples(out_dir, contenders, samples, images, rows)  # for the report's before/after viewer
    write_plot(out_dir / "quality_vs_time.png", table)
    from rvar.eval.protocol import format_table1, table1_rows

    (out_dir / "table1.md").write_text(format_table1(table1_rows(rows), args.protocol) + "\n")
    print((out_dir / "results.md").read_text())
    print(f"wrote {out_dir}/results.md, results.csv, quality_vs_time.png and {len(grids)} grid(s)", file=sys.stderr)
    if args.mlflow:
        params = {"data": args.data, "seed": str(args.seed), "size": str(size), "steps": str(args.steps),
                  "size_policy": args.size_policy, "degradations": args.degradations, "protocol": args.protocol,
                  **{f"model/{c.label}": c.path for c in contenders}}
        run_id = log_mlflow(out_dir, table, params, args.experiment, args.tag)
        print(f"logged to MLflow run {run_id}", file=sys.stderr)
    return 0
