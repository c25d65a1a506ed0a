"""What the app does with a photo, without Gradio: read it, optionally degrade it, restore it with every model.

Each model is a :class:`rvar.inference.LoadedModel` (any checkpoint ``rvar restore`` accepts) and runs through
:func:`rvar.inference.apply_any_size`, the tile path of ``rvar restore``, so a photo of any size is restored as
the command would restore it. Every problem with the user's input (an unreadable file, an unknown degradation,
bad options) is a :class:`~rvar.errors.UserError` whose text the page shows.
"""
from __future__ import annotations

import inspect
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import yaml

from rvar.errors import UserError
from rvar.inference import LoadedModel, apply_any_size
from rvar.io import read_image, write_image

NO_DEGRADATION = "none"


@dataclass
class Restored:
    name: str
    image_3HW: torch.Tensor
    seconds: float
    path: Path  # the PNG offered for download


@dataclass
class Result:
    input_3HW: torch.Tensor  # what the models saw: the photo, degraded when asked
    restored: List[Restored] = field(default_factory=list)


def model_names(paths: List[str]) -> List[str]:
    """Short unique labels from checkpoint paths: ``outputs/demo/restorevar.ckpt`` -> ``restorevar``."""
    names: List[str] = []
    for path in paths:
        stem = Path(path).stem or "model"
        name, number = stem, 2
        while name in names:
            name, number = f"{stem}-{number}", number + 1
        names.append(name)
    return names


def parse_options(text: Optional[str]) -> Dict[str, Any]:
    """Degradation options typed in the page as YAML: ``sigma: 30`` or ``{gain: 0.3, gamma: 2}``; a number is
    a fixed strength, ``[low, high]`` a range."""
    if text is None or not text.strip():
        return {}
    try:
        options = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"degradation options are not YAML ({str(exc).splitlines()[0]}); write e.g. sigma: 30")
    if not isinstance(options, dict):
        raise UserError("degradation options must be NAME: VALUE pairs, e.g. sigma: 30")
    return options


def degradation_help(name: Optional[str]) -> str:
    """The ``Args:`` section of a registered degradation's docstring (its options and their ranges)."""
    from rvar.registry import DEGRADATIONS

    if not name or name == NO_DEGRADATION:
        return "No degradation: the photo is restored as uploaded."
    target = DEGRADATIONS.get(name)
    doc = inspect.getdoc(target) or ""
    summary = doc.split("\n\n")[0].replace("\n", " ")
    args = re.split(r"\n\s*Args:\s*\n", doc, maxsplit=1)
    options = args[1].strip() if len(args) > 1 else "(no options)"
    return f"**{name}**: {summary}\n\nOptions (YAML, e.g. `name: value`):\n```\n{options}\n```"


def degrade(image_3HW: torch.Tensor, name: str, options: Dict[str, Any], seed: int) -> torch.Tensor:
    from rvar.data.degrade import make_degradation

    op = make_degradation(name, options)
    generator = torch.Generator().manual_seed(int(seed))
    try:
        return op(image_3HW[None], generator)[0].clamp(0, 1)
    except (TypeError, ValueError) as exc:
        raise UserError(f"degradation {name!r}: {exc}") from None


class Restoration:
    """The models of one app and a folder for the files it offers for download.

    Args:
        models: label -> loaded model.
        out_dir: where restored PNGs are written (one subfolder per request).
        size_policy: ``tile`` or ``resize`` (as ``rvar restore --size-policy``).
        batch_size: tiles per forward pass.
    """

    def __init__(self, models: Dict[str, LoadedModel], out_dir: Path, size_policy: str = "tile",
                 batch_size: int = 4) -> None:
        self.models, self.out_dir = models, Path(out_dir)
        self.size_policy, self.batch_size = size_policy, batch_size
        self.requests = 0

    def run(self, path: Optional[str], degradation: Optional[str] = None, options: Optional[str] = None,
            seed: int = 0, which: Optional[List[str]] = None) -> Result:
        if not path:
            raise UserError("upload or drop a photo first")
        image = read_image(path)
        input_3HW = image.rgb
        if degradation and degradation != NO_DEGRADATION:
            input_3HW = degrade(input_3HW, degradation, parse_options(options), seed)
        self.requests += 1
        folder = self.out_dir / f"{self.requests:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        result = Result(input_3HW)
        for name, model in self.models.items():
            if which is not None and name not in which:
                continue
            start = time.perf_counter()
            out_3HW = apply_any_size(model.fn, input_3HW, model.native, self.size_policy, self.batch_size)
            seconds = time.perf_counter() - start
            target = folder / f"{Path(path).stem}_{name}.png"
            write_image(target, out_3HW, like=image)  # grey stays grey, alpha is kept
            result.restored.append(Restored(name, out_3HW, seconds, target))
        return result
