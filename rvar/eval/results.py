"""The files an evaluation leaves: a CSV per table (``rvar compare``'s ``results.csv``, the ladder's ``ladder.csv``),
``rvar compare``'s markdown table, comparison grids, sample images for the report's viewer and the
quality-vs-time plot.

The demo's report (:mod:`rvar.demo.report`) reads them back. The scoring that produces the rows is
:mod:`rvar.eval.compare`; the MLflow record of a comparison is written by :mod:`rvar.commands.compare`, since the
MLflow store helpers live in :mod:`rvar.lit.tracking`, above this package.
"""
from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence

from rvar.eval.compare import INPUT_LABEL, Contender, Sample


# ---- 1. results tables --------------------------------------------------------------------------------------
def read_results(csv_path: Path) -> List[Dict[str, str]]:
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_results(csv_path: Path, rows: Sequence[Dict[str, object]], fields: Sequence[str]) -> None:
    """The CSV :func:`read_results` reads (``rvar compare``'s results.csv, ladder.csv); None is written empty."""
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# ---- 2. rvar compare's outputs -----------------------------------------------------------------------------
FIELDS = ("model", "degradation", "images", "psnr", "ssim", "lpips", "ciede2000", "seconds_per_image", "parameters",
          "sampling_steps")


def write_markdown(path: Path, table: List[Dict], header: str) -> None:
    lines = [f"# rvar compare", "", header, ""]
    for degradation in sorted({r["degradation"] for r in table}, key=lambda d: (d == "overall", d)):
        lines += [f"## {degradation}", "",
                  "| model | images | PSNR | SSIM | LPIPS | CIEDE2000 | s / image | parameters | steps |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in table if r["degradation"] == degradation):
            lp = "-" if r["lpips"] is None else f"{r['lpips']:.4f}"
            lines.append(f"| {r['model']} | {r['images']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {lp} | {r['ciede2000']:.2f} | "
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
