"""The paper's datasets as their authors publish them: a source ``{name: sots-outdoor, root: ...}`` pairs itself.

RestoreVAR (arXiv 2505.18047) trains and tests on five sets; each keeps its own folder names and file naming, and
nothing here asks for renaming or flattening:

============================  ==============  =========================================  =====================
name                          degradation     folders (under ``root``, at any depth <= 3) pairing
============================  ==============  =========================================  =====================
``reside-ots``                Haze            ``hazy/`` + ``clear/`` (or ``gt/``)         ``0001_0.8_0.2.jpg`` -> ``0001.*``
``sots-outdoor``              Haze            ``hazy/`` + ``gt/`` (or ``clear/``)         as above
``rain13k``, ``rain100l``,    Rain            ``input/`` + ``target/``, or ``rainy/`` +  same stem, or ``rain-001`` ->
``rain100h``, ``test100``,                    ``norain/``, or one folder with both       ``norain-001``
``test1200``, ``test2800``
``snow100k``                  Snow            ``synthetic/`` + ``gt/``                    same stem
``lolv1``                     Low-light       ``low/`` + ``high/`` (``our485``, ``eval15``) same stem
``gopro``                     Motion blur     ``blur/`` + ``sharp/`` in every sequence    same stem, per sequence
============================  ==============  =========================================  =====================

Labels are the degradation names of RestoreVAR's manifests (``trainset.json`` / ``valset.json``), so the balanced
sampler treats a named set and a manifest alike, and ``rvar test`` files each under its Table 1 row. A named
source is checked when it is read: a missing root, no folders of its layout, or files without a partner stop with one
line saying which and how many (``allow_unpaired: true`` skips unpaired files with a warning instead).

``{name: restorevar, root: trainset.json}`` reads RestoreVAR's own manifests as they are: its degradation names
only (:data:`MANIFEST_DEGRADATIONS`; another fails), every listed file present. A plain ``.json`` path stays rvar's
permissive manifest (any label).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Tuple

from rvar.errors import UserError
from rvar.io import IMAGE_SUFFIXES

# RestoreVAR's degradation names (utils/restoration_loader.py); a manifest with another one fails
MANIFEST_DEGRADATIONS = ("Haze", "Rain", "Snow", "Low-light", "Motion blur", "Mixed", "toled", "poled")
MAX_DEPTH = 3  # pair folders are searched this deep under a root (GoPro: root/train/<sequence>/blur)


def _same(stem: str) -> str:
    return stem


def _reside(stem: str) -> str:
    """RESIDE's hazy ``0001_0.8_0.2`` (image, atmospheric light, beta) belongs to clear ``0001``."""
    return stem.split("_", 1)[0]


def _rain(stem: str) -> str:
    """Rain100L/H's ``rain-001`` and ``norain-001`` (also ``rain-1`` / ``norain-1``) share ``001``."""
    return re.sub(r"^(no)?rain-", "", stem)


@dataclass(frozen=True)
class Layout:
    """One published layout: degradation label, (input folder, target folder) name pairs tried in order, and the
    function mapping a file stem to its pairing key on each side."""

    degradation: str
    folders: Tuple[Tuple[str, str], ...]
    input_key: Callable[[str], str] = _same
    target_key: Callable[[str], str] = _same
    one_folder: Tuple[str, str] = ("", "")  # (input prefix, target prefix) when both live in one folder


_RAIN = Layout("Rain", (("input", "target"), ("rainy", "norain"), ("rain", "norain")), _rain, _rain,
               one_folder=("rain-", "norain-"))
LAYOUTS: Dict[str, Layout] = {
    "reside-ots": Layout("Haze", (("hazy", "clear"), ("hazy", "gt"), ("hazy", "GT")), _reside),
    "sots-outdoor": Layout("Haze", (("hazy", "gt"), ("hazy", "GT"), ("hazy", "clear")), _reside),
    **{name: _RAIN for name in ("rain13k", "rain100l", "rain100h", "test100", "test1200", "test2800")},
    "snow100k": Layout("Snow", (("synthetic", "gt"),)),
    "lolv1": Layout("Low-light", (("low", "high"),)),
    "gopro": Layout("Motion blur", (("blur", "sharp"),)),
}


def _images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _pair_folders(root: Path, layout: Layout) -> List[Tuple[Path, Path]]:
    """(input folder, target folder) pairs of ``layout`` under ``root``, in sorted order, at most MAX_DEPTH deep."""
    found, frontier = [], [root]
    for _ in range(MAX_DEPTH + 1):
        next_frontier = []
        for folder in frontier:
            pair = next(((folder / i, folder / t) for i, t in layout.folders
                         if (folder / i).is_dir() and (folder / t).is_dir()), None)
            if pair is not None:
                found.append(pair)
            else:
                next_frontier.extend(sorted(p for p in folder.iterdir() if p.is_dir()))
        frontier = next_frontier
    return found


def _match(inputs: List[Path], targets: List[Path], layout: Layout) -> Tuple[List[Tuple[Path, Path]], List[Path]]:
    by_key: Dict[str, Path] = {}
    for path in targets:
        by_key.setdefault(layout.target_key(path.stem), path)
    pairs, used = [], set()
    for path in inputs:
        target = by_key.get(layout.input_key(path.stem))
        if target is None:
            continue
        pairs.append((path, target))
        used.add(target)
    unpaired = [p for p in inputs if layout.input_key(p.stem) not in by_key] + [t for t in targets if t not in used]
    return pairs, unpaired


def layout_pairs(name: str, root: str | Path, allow_unpaired: bool = False) -> List[Tuple[Path, Path, str]]:
    """(degraded, clean, degradation) of the dataset ``name`` laid out as published under ``root``."""
    key = str(name).strip().lower()
    if key == "restorevar":
        return manifest_pairs(root)
    if key not in LAYOUTS:
        raise UserError(f"dataset name {name!r}: unknown; known: {', '.join([*LAYOUTS, 'restorevar'])}")
    layout, root = LAYOUTS[key], Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{name}: root {root} is not a folder")
    folders = _pair_folders(root, layout)
    pairs, unpaired = [], []
    if folders:
        for input_dir, target_dir in folders:
            found, missing = _match(_images(input_dir), _images(target_dir), layout)
            pairs.extend(found)
            unpaired.extend(missing)
    elif layout.one_folder[0]:  # Rain100L/H as released: rain-001.png beside norain-001.png
        for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
            files = _images(folder)
            inputs = [p for p in files if p.stem.startswith(layout.one_folder[0])]
            targets = [p for p in files if p.stem.startswith(layout.one_folder[1])]
            found, missing = _match(inputs, targets, layout)
            pairs.extend(found)
            unpaired.extend(missing)
    if not pairs:
        expected = " or ".join(f"{i}/ + {t}/" for i, t in layout.folders)
        raise UserError(f"{name}: no pairs under {root} (expected {expected}"
                        f"{', or rain-*/norain-* files' if layout.one_folder[0] else ''})")
    if unpaired:
        shown = ", ".join(str(p.relative_to(root)) for p in unpaired[:3])
        message = f"{name}: {len(unpaired)} file(s) under {root} without a partner ({shown}{', ...' * (len(unpaired) > 3)})"
        if not allow_unpaired:
            raise UserError(message + "; set allow_unpaired: true to skip them")
        warnings.warn(message + "; skipped", stacklevel=2)
    return [(degraded, clean, layout.degradation) for degraded, clean in pairs]


def check_named_source(source: Mapping) -> Tuple[str, str, bool]:
    """(name, root, allow_unpaired) of a ``{name, root[, allow_unpaired]}`` source, or a one-line UserError."""
    unknown = set(source) - {"name", "root", "allow_unpaired"}
    if unknown or not {"name", "root"} <= set(source):
        raise UserError(f"a named dataset is {{name: ..., root: ...[, allow_unpaired: true]}}; got {dict(source)}")
    return str(source["name"]), str(source["root"]), bool(source.get("allow_unpaired", False))


def manifest_pairs(manifest: str | Path) -> List[Tuple[Path, Path, str]]:
    """RestoreVAR's own ``trainset.json`` / ``valset.json`` as they are (``{name: restorevar, root: valset.json}``):
    paths relative to the manifest's folder (the reference's working directory), its degradation names only, every
    file present."""
    from rvar.data.datasets import pairs_from_manifest

    manifest = Path(manifest).expanduser()
    entries = pairs_from_manifest(manifest)
    unknown = sorted({e.degradation for e in entries} - set(MANIFEST_DEGRADATIONS))
    if unknown:
        raise UserError(f"{manifest}: unknown degradation(s) {', '.join(map(repr, unknown))}; "
                        f"RestoreVAR's are {', '.join(MANIFEST_DEGRADATIONS)}")
    missing = [p for e in entries for p in (e.input_path, e.target_path) if not p.is_file()]
    if missing:
        raise UserError(f"{manifest}: {len(missing)} listed file(s) missing ({', '.join(map(str, missing[:3]))}"
                        f"{', ...' * (len(missing) > 3)})")
    return [(e.input_path, e.target_path, e.degradation) for e in entries]
