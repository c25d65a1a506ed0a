"""``rvar compare``: run restorers and baselines on the same test images; tables, grids, a plot, MLflow.

The command parses its arguments, checks them before any work, and logs the run to MLflow; the scoring is
:mod:`rvar.eval.compare` and the files it writes are :mod:`rvar.eval.results`'s.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from rvar.data.degrade import DEFAULT_DEGRADATIONS
from rvar.errors import UserError
from rvar.eval.compare import (EMBEDDED, DegradationSpec, aggregate, evaluate, input_contender, load_contenders,
                               load_ladder_models, load_samples)
from rvar.eval.results import FIELDS, write_grids, write_markdown, write_plot, write_results, write_samples
from rvar.inference import PRECISIONS, resolve_precision

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
    from rvar.commands.restore import add_fidelity_argument

    add_fidelity_argument(parser)
    parser.add_argument("--size", type=int, help="image side in pixels: the centre crop (default 256), or the Lanczos "
                                                 "resize of --protocol restorevar (default 512)")
    parser.add_argument("--size-policy", choices=("tile", "resize"), default="tile",
                        help="how models of a smaller native size restore the crops (default tile, as rvar restore)")
    parser.add_argument("--ladder", action=argparse.BooleanOptionalAction, default=True,
                        help="quality ladder of RestoreVAR checkpoints (default on)")
    parser.add_argument("--ladder-from", nargs="*", default=[], metavar="CKPT",
                        help="further RestoreVAR checkpoints scored for the ladder only")
    parser.add_argument("--ladder-images", type=int, default=None, metavar="N",
                        help="score the ladder on the first N photos only (each under every degradation; default all)")
    parser.add_argument("--labels", help="comma-separated model labels (default: checkpoint file names)")
    parser.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True,
                        help="log to MLflow (default on)")
    parser.add_argument("--experiment", default="rvar-compare", help="MLflow experiment name")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="MLflow run tag (repeatable; `rvar demo` nests its comparison this way)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default), bf16, or auto (bf16 where the CPU computes it natively, as `rvar demo` "
                             "uses): every model and the ladder run under it; the metrics are always fp32")
    parser.add_argument("--protocol", choices=("native", "restorevar"), default="native",
                        help="native: centre crops at --size, float metrics; restorevar: the paper's (512x512 Lanczos "
                             "pairs, uint8 RGB PSNR/SSIM, LPIPS-Alex, --max-images default 5000); both also write "
                             "table1.md (RestoreVAR's Table 1 layout with the paper's values)")


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
            for name in ("psnr", "ssim", "lpips", "ciede2000", "seconds_per_image"):
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
    from rvar.commands.restore import check_fidelity

    precision = resolve_precision(args.precision, torch.device("cpu"))
    contenders = load_contenders(args.checkpoints, args.labels, args.steps, check_fidelity(args.fidelity),
                                  args.decoding, precision)
    contenders += [input_contender()]
    ladder_models = load_ladder_models(contenders, args.ladder_from) if args.ladder else []
    restorevar = args.protocol == "restorevar"  # rvar/eval/protocol.py
    size = args.size or (512 if restorevar else 256)
    samples = load_samples(args.data, specs, size, args.seed, (args.max_images or 5000) if restorevar
                           else args.max_images, args.protocol)
    if not samples:
        raise UserError(f"{args.data}: no test images")
    rows, images = evaluate(contenders, samples, args.seed, args.size_policy, args.protocol)
    table = aggregate(rows, contenders)
    if ladder_models:
        from rvar.eval.ladder import quality_ladder, write_ladder

        names = list(dict.fromkeys(s.name for s in samples))[: args.ladder_images or None]
        ladder = quality_ladder(ladder_models, [s for s in samples if s.name in names], args.seed, args.size_policy,
                                precision)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (f"data `{args.data}`, {len(samples)} image(s) at {size} px ({args.protocol} protocol, "
              f"{args.size_policy} policy), seed {args.seed}, "
              f"degradations {', '.join(sorted({s.degradation for s in samples}))}; CPU, {precision}, "
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
                  "size_policy": args.size_policy, "precision": precision, "degradations": args.degradations,
                  "protocol": args.protocol,
                  **{f"model/{c.label}": c.path for c in contenders}}
        run_id = log_mlflow(out_dir, table, params, args.experiment, args.tag)
        print(f"logged to MLflow run {run_id}", file=sys.stderr)
    return 0
