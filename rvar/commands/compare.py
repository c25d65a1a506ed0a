"""``rvar compare``: run restorers and baselines on the same test images; tables, grids, a plot, MLflow."""
from __future__ import annotations

import argparse
import csv
import math
import os
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
sqlite:///mlflow.db). Images are centre-cropped to --size (default: the models' native size, else 256).

--data is `embedded-val` (the scikit-image validation photos, degraded with --degradations), a folder of
clean images (degraded likewise), a paired folder (input/ + target/) or a RestoreVAR JSON manifest.
Degradations are reproducible from --seed. A bad checkpoint or data path stops before anything is written.

example:
  rvar compare outputs/tiny/restorer.ckpt outputs/tiny/ldm/last.ckpt outputs/tiny/nafnet/last.ckpt \\
      --data embedded-val --degradations rain,haze -o outputs/compare --steps 20
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="restorer / baseline checkpoints")
    parser.add_argument("--data", default="embedded-val",
                        help="embedded-val | clean folder | paired folder | manifest .json (default embedded-val)")
    parser.add_argument("--degradations", "-d", default=",".join(DEFAULT_DEGRADATIONS),
                        help="comma-separated registered degradations for clean test sets, or 'all'")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the degradations and samplers")
    parser.add_argument("--output", "-o", required=True, help="output folder")
    parser.add_argument("--steps", type=int, help="sampling steps of diffusion baselines (default: their own)")
    parser.add_argument("--max-images", type=int, help="at most this many images (per degradation for clean sets)")
    parser.add_argument("--size", type=int, help="crop side in pixels (default: the models' native size)")
    parser.add_argument("--labels", help="comma-separated model labels (default: checkpoint file names)")
    parser.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True,
                        help="log to MLflow (default on)")
    parser.add_argument("--experiment", default="rvar-compare", help="MLflow experiment name")


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


def input_contender() -> Contender:
    """The degraded images themselves, scored like a model: the floor every restorer must beat."""
    from rvar.inference import LoadedModel

    identity = LoadedModel(fn=lambda x: x, native=None, kind="input", description=INPUT_LABEL,
                           module=torch.nn.Identity())
    return Contender(INPUT_LABEL, "-", identity, 0, 0)


# ---- 2. test images -----------------------------------------------------------------------------------------
@dataclass
class Sample:
    name: str
    degradation: str
    degraded: torch.Tensor  # (3, S, S) in [0, 1]
    clean: torch.Tensor


def centre_crop(image_3HW: torch.Tensor, size: int, path: Path) -> torch.Tensor:
    from rvar.data.datasets import fit_crop

    image_3HW = fit_crop(image_3HW, size, path)
    _, H, W = image_3HW.shape
    top, left = (H - size) // 2, (W - size) // 2
    return image_3HW[:, top:top + size, left:left + size].contiguous()


def degradation_names(text: str) -> List[str]:
    from rvar.commands.degrade import parse_names

    return parse_names(text)


def load_samples(data: str, names: List[str], size: int, seed: int, max_images: Optional[int]) -> List[Sample]:
    """The test set as (degraded, clean) crops of side ``size``."""
    from rvar.data.datasets import load_pairs, scan_clean_folders, source_kind
    from rvar.data.degrade import make_degradation, sample_seed
    from rvar.data.embedded import ensure_embedded
    from rvar.io import read_image

    if data == "embedded-val":
        kind, folder = "clean", ensure_embedded() / "val"
    else:
        kind, folder = source_kind(data), Path(data)
    samples: List[Sample] = []
    if kind == "clean":
        paths = scan_clean_folders([folder])[: max_images or None]
        for name in names:
            op = make_degradation(name)
            for number, path in enumerate(paths):
                clean = centre_crop(read_image(path).rgb, size, path)
                generator = torch.Generator().manual_seed(sample_seed(seed, name, number))
                degraded = op(clean[None], generator)[0].clamp(0, 1)
                samples.append(Sample(path.stem, name, degraded, clean))
        return samples
    for entry in load_pairs([data])[: max_images or None]:
        both = torch.cat([read_image(entry.input_path).rgb, read_image(entry.target_path).rgb])
        both = centre_crop(both, size, entry.input_path)
        samples.append(Sample(entry.input_path.stem, entry.degradation, both[:3], both[3:]))
    return samples


# ---- 3. running and scoring ---------------------------------------------------------------------------------
def evaluate(contenders: List[Contender], samples: List[Sample], seed: int):
    """Per model and sample: restored image, seconds, PSNR, SSIM, LPIPS (or None)."""
    from tqdm import tqdm

    from rvar.inference import apply_any_size
    from rvar.metrics import load_lpips, lpips_per_image, psnr_per_image, ssim_per_image

    lpips = load_lpips()
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
                restored = apply_any_size(model.fn, sample.degraded, model.native, policy="resize")
            seconds = time.perf_counter() - start
            pred, target = restored[None].clamp(0, 1), sample.clean[None]
            rows.append({"model": contender.label, "degradation": sample.degradation, "image": sample.name,
                         "psnr": float(psnr_per_image(pred, target)[0]), "ssim": float(ssim_per_image(pred, target)[0]),
                         "lpips": float(lpips_per_image(lpips, pred, target)[0]) if lpips is not None else None,
                         "seconds": seconds})
            images[(contender.label, number)] = restored
    return rows, images


def aggregate(rows: List[Dict], contenders: List[Contender]) -> List[Dict]:
    """Mean metrics per (model, degradation) and per model over everything (degradation ``overall``)."""
    info = {c.label: c for c in contenders}
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
            lp = [r["lpips"] for r in group if r["lpips"] is not None]
            table.append({"model": contender.label, "degradation": degradation, "images": len(group),
                          "psnr": sum(r["psnr"] for r in group) / len(group),
                          "ssim": sum(r["ssim"] for r in group) / len(group),
                          "lpips": sum(lp) / len(lp) if lp else None,
                          "seconds_per_image": sum(r["seconds"] for r in group) / len(group),
                          "parameters": info[contender.label].parameters,
                          "sampling_steps": info[contender.label].steps})
    return table


# ---- 4. outputs ---------------------------------------------------------------------------------------------
FIELDS = ("model", "degradation", "images", "psnr", "ssim", "lpips", "seconds_per_image", "parameters",
          "sampling_steps")


def write_csv(path: Path, table: List[Dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in table:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in FIELDS})


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


def write_plot(path: Path, table: List[Dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = [r for r in table if r["degradation"] == "overall"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for r in overall:
        if r["model"] == INPUT_LABEL:  # no time to plot: a reference line
            ax.axhline(r["psnr"], color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"{INPUT_LABEL} {r['psnr']:.2f} dB", (0.02, r["psnr"]), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 3), fontsize=8, color="grey")
            continue
        ax.scatter(r["seconds_per_image"], r["psnr"], s=40)
        ax.annotate(f"{r['model']} ({r['sampling_steps']} steps)", (r["seconds_per_image"], r["psnr"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (log)")
    ax.set_ylabel("PSNR (dB), all degradations")
    ax.set_title("quality vs time")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def log_mlflow(out_dir: Path, table: List[Dict], params: Dict[str, str], experiment: str) -> str:
    """Log the metrics and every output file to an MLflow run; returns the run id."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = None
        if uri.startswith("sqlite:///"):  # keep artifacts next to the database, not in the working folder
            location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name="compare") as run:
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
    if args.data != "embedded-val" and not Path(args.data).exists():
        raise UserError(f"{args.data}: no such test set (use embedded-val, a folder or a manifest)")
    names = degradation_names(args.degradations)
    contenders = load_contenders(args.checkpoints, args.labels, args.steps) + [input_contender()]
    natives = sorted({c.model.native for c in contenders if c.model.native})
    size = args.size or (natives[-1] if natives else 256)
    samples = load_samples(args.data, names, size, args.seed, args.max_images)
    if not samples:
        raise UserError(f"{args.data}: no test images")
    rows, images = evaluate(contenders, samples, args.seed)
    table = aggregate(rows, contenders)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (f"data `{args.data}`, {len(samples)} image(s) at {size} px, seed {args.seed}, "
              f"degradations {', '.join(sorted({s.degradation for s in samples}))}; CPU, fp32, "
              f"{torch.get_num_threads()} threads; checkpoints: "
              + ", ".join(f"{c.label} = `{c.path}`" for c in contenders))
    write_csv(out_dir / "results.csv", table)
    write_markdown(out_dir / "results.md", table, header)
    grids = write_grids(out_dir, contenders, samples, images)
    write_plot(out_dir / "quality_vs_time.png", table)
    print((out_dir / "results.md").read_text())
    print(f"wrote {out_dir}/results.md, results.csv, quality_vs_time.png and {len(grids)} grid(s)", file=sys.stderr)
    if args.mlflow:
        params = {"data": args.data, "seed": str(args.seed), "size": str(size), "steps": str(args.steps),
                  **{f"model/{c.label}": c.path for c in contenders}}
        run_id = log_mlflow(out_dir, table, params, args.experiment)
        print(f"logged to MLflow run {run_id}", file=sys.stderr)
    return 0
