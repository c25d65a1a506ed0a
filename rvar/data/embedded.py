"""The embedded default dataset: colour photographs shipped inside scikit-image's wheel (no download).

:func:`ensure_embedded` writes them once as PNGs into ``<root>/train`` and ``<root>/val`` (a fixed split). The
root is ``$RVAR_DATA_HOME`` or ``~/.cache/rvar/embedded``, always absolute, so configs work from any folder.
Building happens in a temporary folder next to the root, renamed into place at the end, so an interrupted
build never leaves a half-written set, and a second call does nothing.

Only images that ``skimage.data`` reads from its own package files are used (``lily``, ``eagle``, ``kidney``
and ``skin`` need pooch and a download, so they are not).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

TRAIN_IMAGES = ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "motorcycle_left")
VAL_IMAGES = ("chelsea", "rocket")
_MARKER = ".complete"


def _loaders() -> Dict[str, Callable[[], np.ndarray]]:
    from skimage import data  # imported late: rvar must import without scikit-image work

    loaders: Dict[str, Callable[[], np.ndarray]] = {name: getattr(data, name) for name in
                                                    ("astronaut", "coffee", "hubble_deep_field",
                                                     "immunohistochemistry", "retina", "chelsea", "rocket")}
    loaders["motorcycle_left"] = lambda: data.stereo_motorcycle()[0]
    return loaders


def default_root() -> Path:
    """``$RVAR_DATA_HOME`` or ``~/.cache/rvar/embedded``, absolute."""
    env = os.environ.get("RVAR_DATA_HOME")
    root = Path(env) if env else Path.home() / ".cache" / "rvar" / "embedded"
    return root.expanduser().resolve()


def ensure_embedded(root: Optional[str | os.PathLike] = None) -> Path:
    """Make sure the embedded photos exist under ``root`` (see the module docstring); return ``root``.

    Args:
        root: destination folder; default :func:`default_root`.

    Returns:
        The absolute root, holding ``train/*.png`` and ``val/*.png``.
    """
    from PIL import Image

    root = Path(root).expanduser().resolve() if root is not None else default_root()
    if (root / _MARKER).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        loaders = _loaders()
        for split, names in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES)):
            (staging / split).mkdir()
            for name in names:
                array = np.asarray(loaders[name]())[..., :3]
                Image.fromarray(array.astype(np.uint8), mode="RGB").save(staging / split / f"{name}.png")
        (staging / _MARKER).write_text("scikit-image photographs, written by rvar.data.embedded\n")
        if root.exists() and not (root / _MARKER).is_file():
            shutil.rmtree(root)  # an old incomplete build (cannot happen with rename, but be safe)
        try:
            os.rename(staging, root)
        except OSError:
            if not (root / _MARKER).is_file():  # another process won the race only if it completed
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root
