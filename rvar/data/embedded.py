"""The embedded default dataset: photographs shipped inside installed packages, plus procedural images.

:func:`ensure_embedded` writes them once as PNGs into ``<root>/train``, ``<root>/val`` and ``<root>/test``. The
root is ``$RVAR_DATA_HOME`` or ``~/.cache/rvar/embedded``, always absolute, so configs work from any folder.
Building happens in a temporary folder next to the root, renamed into place at the end, so an interrupted
build never leaves a half-written set, and a second call does nothing (a set written by an older rvar, whose
marker names another :data:`VERSION`, is rebuilt).

The splits never share a photograph, and the photos a result is reported on are never used to choose anything:

* ``train``: scikit-image's colour photos (``astronaut``, ``coffee``, ``motorcycle_left``, ``hubble_deep_field``,
  ``immunohistochemistry``, ``retina``), its grey photos and textures as RGB (``camera``, ``brick``, ``grass``,
  ``gravel``, ``moon``, ``coins``: structure without colour), the ``train`` photos vendored in
  ``rvar/assets/photos`` (Kodak and Wikimedia Commons, credits in its ``CREDITS.md``) and :data:`DEAD_LEAVES`
  dead-leaves images (occluding discs with power-law radii, a scale-invariant model of natural images known to
  train restoration networks well; Lee, Mumford and Huang 2001; Achddou et al. 2021). Half of them take their
  colours from natural photos, half from the whole gamut (every hue, saturation and brightness), so greens and
  blues that the photos rarely show are seen too.
* ``val``: natural photos only, for every choice (recipes, checkpoints, sampling settings):
  ``motorcycle_right`` (the other view of the stereo pair), the five photos earlier rvar versions reported on
  (scikit-image's ``chelsea`` and ``rocket``, scikit-learn's ``china`` and ``flower``, Matplotlib's
  ``grace_hopper``: recipes were chosen on them, so they can only validate) and the vendored ``val`` photos.
* ``test``: the vendored ``test`` photos (15 natural photos, split off by a fixed rule before any result was
  seen, ``data/vendor_photos.py``): the demo's and ``rvar compare``'s report; nothing is chosen on them.

Only files that the packages ship are read (``lily``, ``eagle``, ``kidney`` and ``skin`` need a download).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

VERSION = "3"
COLOUR_TRAIN = ("astronaut", "coffee", "motorcycle_left", "hubble_deep_field", "immunohistochemistry", "retina")
GREY_TRAIN = ("camera", "brick", "grass", "gravel", "moon", "coins")
PALETTE_SOURCES = ("astronaut", "coffee", "motorcycle_left")
DEAD_LEAVES = 48  # training images
DEAD_LEAVES_SIZE = 384
VAL_IMAGES = ("motorcycle_right", "chelsea", "rocket", "china", "flower", "grace_hopper")
VENDORED = Path(__file__).resolve().parents[1] / "assets" / "photos"  # train/, val/, test/ and CREDITS.md
_MARKER = ".complete"


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed")
    return Path(list(spec.submodule_search_locations)[0], *parts)


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _loaders() -> Dict[str, Callable[[], np.ndarray]]:
    """Photo name -> loader of an (H, W, 3) uint8 array, reading package files only."""
    skimage_data = lambda name: (lambda: _read(_package_file("skimage", "data", name)))  # noqa: E731
    files = {"astronaut": "astronaut.png", "coffee": "coffee.png", "motorcycle_left": "motorcycle_left.png",
             "motorcycle_right": "motorcycle_right.png", "hubble_deep_field": "hubble_deep_field.jpg",
             "immunohistochemistry": "ihc.png", "retina": "retina.jpg", "chelsea": "chelsea.png",
             "rocket": "rocket.jpg", "camera": "camera.png", "brick": "brick.png", "grass": "grass.png",
             "gravel": "gravel.png", "moon": "moon.png", "coins": "coins.png"}
    loaders = {name: skimage_data(file) for name, file in files.items()}
    loaders["china"] = lambda: _read(_package_file("sklearn", "datasets", "images", "china.jpg"))
    loaders["flower"] = lambda: _read(_package_file("sklearn", "datasets", "images", "flower.jpg"))
    loaders["grace_hopper"] = lambda: _read(_package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"))
    return loaders


def dead_leaves(seed: int, palette: np.ndarray, size: int = DEAD_LEAVES_SIZE,
                radii: Tuple[float, float] = (2.5, 0.3)) -> np.ndarray:
    """One dead-leaves image (H, W, 3) uint8: discs with radii drawn from p(r) ~ r^-3.

    Disc colours are drawn from ``palette`` (pixels of natural photos, so the colour statistics are natural).
    Discs are painted back to front until the canvas is covered; a third of the images is slightly blurred
    (out-of-focus leaves) so that sharp and soft edges both occur.

    Args:
        seed: the image is a function of it (and of ``palette``).
        palette: (N, 3) uint8 colours.
        size: side in pixels.
        radii: smallest radius in pixels and largest as a fraction of ``size``.
    """
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    r_min, r_max = radii[0], radii[1] * size
    count = 6000
    u = rng.random(count)
    r = (r_min ** -2 + u * (r_max ** -2 - r_min ** -2)) ** -0.5  # inverse CDF of p(r) ~ r^-3 on [r_min, r_max]
    centres = rng.random((count, 2)) * size
    colours = palette[rng.integers(0, len(palette), count)]
    image = Image.new("RGB", (size, size), tuple(int(c) for c in colours[0]))
    draw = ImageDraw.Draw(image)
    for (cx, cy), radius, colour in zip(centres[::-1], r[::-1], colours[::-1]):  # the first disc ends on top
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=tuple(int(c) for c in colour))
    if seed % 3 == 2:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5))))
    return np.asarray(image)


def full_gamut_palette(seed: int, count: int = 4096) -> np.ndarray:
    """(count, 3) uint8 colours spread over the whole gamut: uniform hue, saturation and brightness (the
    brightness kept above 0.05 so that not every other disc is black)."""
    from skimage.color import hsv2rgb

    hsv = np.random.default_rng(10_000 + seed).random((count, 1, 3))
    hsv[..., 2] = 0.05 + 0.95 * hsv[..., 2]
    return (hsv2rgb(hsv)[:, 0] * 255).round().astype(np.uint8)


def vendored_photos(split: str) -> Dict[str, Path]:
    """Name -> file of the natural photos rvar ships for ``split`` (train, val or test)."""
    return {p.stem: p for p in sorted((VENDORED / split).glob("*.jpg"))}


def default_root() -> Path:
    """``$RVAR_DATA_HOME`` or ``~/.cache/rvar/embedded``, absolute."""
    env = os.environ.get("RVAR_DATA_HOME")
    root = Path(env) if env else Path.home() / ".cache" / "rvar" / "embedded"
    return root.expanduser().resolve()


def _complete(root: Path) -> bool:
    marker = root / _MARKER
    return marker.is_file() and marker.read_text().startswith(f"v{VERSION} ")


def _write_set(staging: Path) -> None:
    from PIL import Image

    def save(split: str, name: str, array: np.ndarray) -> None:
        Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8), mode="RGB").save(staging / split / f"{name}.png")

    loaders = _loaders()
    for split in ("train", "val", "test"):
        (staging / split).mkdir()
    palettes = []  # each dead-leaves image takes its colours from one everyday photo
    for name in COLOUR_TRAIN + GREY_TRAIN:
        array = loaders[name]()
        save("train", name, array)
        if name in PALETTE_SOURCES:
            palettes.append(array[::5, ::5, :3].reshape(-1, 3))
    vendored = {split: vendored_photos(split) for split in ("train", "val", "test")}
    if not all(vendored.values()):
        raise FileNotFoundError(f"{VENDORED}: the vendored photos are missing (reinstall rvar)")
    palettes += [_read(p)[::4, ::4].reshape(-1, 3) for p in vendored["train"].values()]
    for number in range(DEAD_LEAVES):
        palette = full_gamut_palette(number) if number % 2 else palettes[(number // 2) % len(palettes)]
        save("train", f"dead_leaves_{number:02d}", dead_leaves(number, palette))
    for name in VAL_IMAGES:
        save("val", name, loaders[name]())
    for split in ("train", "val", "test"):
        for name, path in vendored[split].items():
            save(split, name, _read(path))


def ensure_embedded(root: Optional[str | os.PathLike] = None) -> Path:
    """Make sure the embedded set exists under ``root`` (see the module docstring); return ``root``.

    Args:
        root: destination folder; default :func:`default_root`.

    Returns:
        The absolute root, holding ``train/*.png``, ``val/*.png`` and ``test/*.png``.
    """
    root = Path(root).expanduser().resolve() if root is not None else default_root()
    if _complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _write_set(staging)
        (staging / _MARKER).write_text(f"v{VERSION} photographs from installed packages and dead-leaves images, "
                                       "written by rvar.data.embedded\n")
        if root.exists() and not _complete(root):
            shutil.rmtree(root)  # an older or incomplete set
        try:
            os.rename(staging, root)
        except OSError:
            if not _complete(root):  # another process won the race only if it completed
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root
