"""Shared engine of ``rvar restore`` and ``rvar reconstruct``: images in, same-named images out.

Each output keeps its input's file name (folders keep their relative layout) and colour mode; outputs are
written atomically and never over an input; an unreadable input is reported on one line and skipped, and the
command then exits with status 1 after processing the rest.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch
from tqdm import tqdm

from rvar.errors import ImageError, UserError
from rvar.inference import SIZE_POLICIES, LoadedModel, apply_any_size
from rvar.io import iter_images, read_image, write_image


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--ckpt", required=True, help="rvar checkpoint (.ckpt)")
    parser.add_argument("--output", "-o", required=True, help="output folder (created; inputs are never overwritten)")
    parser.add_argument("--size-policy", choices=SIZE_POLICIES, default="tile",
                        help="images not at the model's native size: overlapping tiles blended (default) or "
                             "resize to native and back")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                        help="fp32 (default, exact), bf16 autocast, or auto (bf16 where the hardware has it)")


@dataclass
class BatchResult:
    written: List[Path] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)


def run_over_images(model: LoadedModel, inputs: List[str], output: str, policy: str, batch_size: int,
                    on_image: Optional[Callable[[Path, torch.Tensor, torch.Tensor], None]] = None,
                    desc: str = "restoring") -> BatchResult:
    """Process every image; ``on_image(path, input_rgb, output_rgb)`` is called after each success."""
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    items = iter_images(inputs)
    out_dir = Path(output)
    input_paths = [p for p, _ in items]
    targets = [out_dir / rel for _, rel in items]
    resolved_inputs = {p.resolve() for p in input_paths}
    clash = next((t for t in targets if t.resolve() in resolved_inputs), None)
    if clash is not None:
        raise UserError(f"{clash}: output would overwrite an input image; choose another output folder")
    result = BatchResult()
    bar = tqdm(list(zip(items, targets)), desc=desc, unit="img", file=sys.stderr, disable=None)
    for (path, _), target in bar:
        try:
            image = read_image(path)
        except ImageError as exc:
            tqdm.write(f"rvar: skipped: {exc}", file=sys.stderr)
            result.failed.append(str(path))
            continue
        start = time.perf_counter()
        out = apply_any_size(model.fn, image.rgb, model.native, policy, batch_size)
        result.seconds.append(time.perf_counter() - start)
        write_image(target, out, like=image, inputs=input_paths)
        result.written.append(target)
        if on_image is not None:
            on_image(path, image.rgb, out)
    return result


def finish(result: BatchResult, output: str, what: str) -> int:
    n = len(result.written)
    mean = sum(result.seconds) / max(len(result.seconds), 1)
    print(f"{what} {n} image(s) into {output} ({mean:.2f} s/image)", file=sys.stderr)
    if result.failed:
        print(f"rvar: error: {len(result.failed)} input(s) could not be read: {', '.join(result.failed[:5])}",
              file=sys.stderr)
        return 1
    return 0
