"""Shared engine of ``rvar restore`` and ``rvar reconstruct``: images in, same-named images out.

Each output keeps its input's file name (folders keep their relative layout) and colour mode; outputs are
written atomically and never over an input; an unreadable input is reported on one line and skipped, and the
command then exits with status 1 after processing the rest.

Checked before any model is loaded (:func:`plan_outputs`), each a one-line error: an output folder that cannot be
created or written, two inputs that would give the same output file, an output over an input. The output folder
is left out when it lies inside an input folder. A format rvar does not write (GIF, ...) gives a PNG, said once
per file. Ctrl-C and SIGTERM stop after removing the file being written and say how many images were done.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from rvar.errors import ImageError, UserError
from rvar.inference import PRECISIONS, SIZE_POLICIES, LoadedModel, apply_any_size
from rvar.io import iter_images, output_relative_path, read_image, write_image


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--ckpt", required=True, help="rvar checkpoint (.ckpt)")
    parser.add_argument("--output", "-o", required=True, help="output folder (created; inputs are never overwritten)")
    parser.add_argument("--size-policy", choices=SIZE_POLICIES, default="tile",
                        help="images not at the model's native size: overlapping tiles blended (default) or "
                             "resize to native and back")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default, exact), bf16 autocast, or auto (bf16 where the hardware has it)")


@dataclass
class BatchResult:
    written: List[Path] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)


def check_output_folder(output: str | os.PathLike) -> Path:
    """Prove ``output`` can be created and written (a temp file made and removed in it, or in its nearest
    existing parent: nothing is left behind when a later check fails), or raise a one-line UserError."""
    out_dir = Path(output)
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{existing}: exists and is not a folder; give -o a folder (new or existing)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write the output folder ({exc.strerror or exc}); "
                        f"choose another -o") from None
    return out_dir


def plan_outputs(inputs: Sequence[str], output: str, batch_size: int = 1) -> List[Tuple[Path, Path]]:
    """``(input, output file)`` for every image, after every check that needs no model (see the module doc)."""
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    items = iter_images(inputs, exclude=output)
    out_dir = Path(output)
    targets = [out_dir / output_relative_path(rel) for _, rel in items]
    resolved_inputs = {p.resolve() for p, _ in items}
    clash = next((t for t in targets if t.resolve() in resolved_inputs), None)
    if clash is not None:
        raise UserError(f"{clash}: output would overwrite an input image; choose another output folder")
    first = {}
    for (path, _), target in zip(items, targets):
        other = first.setdefault(target.resolve(), path)
        if other != path:
            raise UserError(f"{other} and {path} would both be written to {target}; restore them into "
                            f"separate output folders, or rename one")
    check_output_folder(out_dir)
    return list(zip([p for p, _ in items], targets))


def run_over_images(model: LoadedModel, plan: List[Tuple[Path, Path]], batch_size: int, policy: str,
                    on_image: Optional[Callable[[Path, torch.Tensor, torch.Tensor], None]] = None,
                    desc: str = "restoring") -> BatchResult:
    """Process every ``(input, target)`` of :func:`plan_outputs`; ``on_image(path, input_rgb, output_rgb)`` is
    called after each success. Ctrl-C / SIGTERM: says how many were done, then re-raises."""
    input_paths = [path for path, _ in plan]
    result = BatchResult()
    try:
        for path, target in tqdm(plan, desc=desc, unit="img", file=sys.stderr, disable=None):
            _one_image(model, path, target, input_paths, batch_size, policy, on_image, result)
    except KeyboardInterrupt:  # rvar.errors.Terminated (SIGTERM) too; atomic_write removed its temp file
        print(f"rvar: stopped after {len(result.written)} of {len(plan)} image(s); the files written are "
              f"complete", file=sys.stderr)
        raise
    return result


def _one_image(model: LoadedModel, path: Path, target: Path, input_paths: List[Path], batch_size: int,
               policy: str, on_image, result: BatchResult) -> None:
    try:
        image = read_image(path)
    except ImageError as exc:
        tqdm.write(f"rvar: skipped: {exc}", file=sys.stderr)
        result.failed.append(str(path))
        return
    if target.name != path.name:
        tqdm.write(f"rvar: note: {path}: rvar does not write {path.suffix or 'this format'}; writing "
                   f"{target.name} (first frame)", file=sys.stderr)
    start = time.perf_counter()
    out = apply_any_size(model.fn, image.rgb, model.native, policy, batch_size)
    result.seconds.append(time.perf_counter() - start)
    try:
        write_image(target, out, like=image, inputs=input_paths)
    except OSError as exc:
        raise UserError(f"{target}: cannot write ({exc.strerror or exc}) after {len(result.written)} image(s); "
                        f"free space or choose another -o") from None
    result.written.append(target)
    if on_image is not None:
        on_image(path, image.rgb, out)


def finish(result: BatchResult, output: str, what: str) -> int:
    n = len(result.written)
    mean = sum(result.seconds) / max(len(result.seconds), 1)
    print(f"{what} {n} image(s) into {output} ({mean:.2f} s/image)", file=sys.stderr)
    if result.failed:
        print(f"rvar: error: {len(result.failed)} input(s) could not be read: {', '.join(result.failed[:5])}",
              file=sys.stderr)
        return 1
    return 0
