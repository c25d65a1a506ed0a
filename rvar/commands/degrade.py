"""``rvar degrade``: apply registered degradations to images and write a labelled contact sheet."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rvar.data.degrade import make_degradation, sample_seed
from rvar.errors import ImageError, UserError
from rvar.io import iter_images, read_image, save_grid, write_image
from rvar.registry import DEGRADATIONS

HELP = "degrade images with registered degradations and write a contact sheet"
DESCRIPTION = """Apply each named degradation (with its default options) to each image. Writes
DIR/<degradation>/<name>.png and DIR/contact_sheet.png (rows: images; columns: clean, then each degradation).
The result is reproducible from --seed. An unreadable image is reported on one line and skipped; the exit
status is then 1.

example:
  rvar degrade photos/ --degradations rain,haze,jpeg -o outputs/degraded --seed 0
  rvar degrade cat.png --degradations all -o outputs/all
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--degradations", "-d", required=True,
                        help="comma-separated degradation names, or 'all' (see: rvar plugins --kind degradations)")
    parser.add_argument("--output", "-o", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--size", type=int, default=256,
                        help="shrink images so the longer side is at most this many pixels; 0 keeps them (default 256)")


def parse_names(text: str) -> List[str]:
    """Names from ``a,b,c`` or ``all``; an unknown name raises UserError listing the known ones."""
    known = DEGRADATIONS.list()
    names = known if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--degradations is empty; known: " + ", ".join(known))
    for name in names:
        DEGRADATIONS.get(name)  # raises UserError("unknown degradation ...; known: ...")
    return names


def shrink(rgb_3HW: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the longer side is at most ``size`` (anti-aliased); ``size`` 0 keeps the image."""
    height, width = rgb_3HW.shape[-2:]
    if size <= 0 or max(height, width) <= size:
        return rgb_3HW
    scale = size / max(height, width)
    new = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(rgb_3HW[None], size=new, mode="bilinear", antialias=True, align_corners=False)[0]


def run(args: argparse.Namespace) -> int:
    names = parse_names(args.degradations)
    ops = {name: make_degradation(name) for name in names}
    images = iter_images(args.images)
    out_dir = Path(args.output)
    inputs = {path for path, _ in images}
    rows, row_labels, failures = [], [], 0
    for number, (path, relative) in enumerate(tqdm(images, desc="degrade", unit="image", file=sys.stderr)):
        try:
            loaded = read_image(path)
        except ImageError as exc:
            tqdm.write(f"rvar: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        clean_3HW = shrink(loaded.rgb, args.size)
        if loaded.alpha is not None:
            loaded.alpha = shrink(loaded.alpha.expand(3, -1, -1), args.size)[:1]
        row: List[Optional[torch.Tensor]] = [clean_3HW]
        for name, op in ops.items():
            generator = torch.Generator().manual_seed(sample_seed(args.seed, name, number))
            degraded_3HW = op(clean_3HW[None], generator)[0].clamp(0, 1)
            write_image(out_dir / name / relative.with_suffix(".png"), degraded_3HW, like=loaded, inputs=inputs)
            row.append(degraded_3HW)
        rows.append(row)
        row_labels.append(relative.stem)
    if rows:
        sheet = save_grid(out_dir / "contact_sheet.png", rows, ["clean", *names], row_labels, inputs=inputs)
        print(f"wrote {len(rows)} x {len(names)} degraded images and {sheet}")
    return 1 if failures else 0  # each failure was already reported on its own line
