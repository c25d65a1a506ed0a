"""Shared, generic test fixtures: small real image files and an isolated embedded-data folder."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def rvar_data_home(tmp_path_factory) -> Path:
    """A session-wide ``RVAR_DATA_HOME`` so the embedded photos are written once, outside the user's cache."""
    home = tmp_path_factory.mktemp("rvar_data_home")
    previous = os.environ.get("RVAR_DATA_HOME")
    os.environ["RVAR_DATA_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("RVAR_DATA_HOME", None)
    else:
        os.environ["RVAR_DATA_HOME"] = previous


@pytest.fixture()
def tmp_images(tmp_path) -> dict[str, Path]:
    """Small real image files of several kinds: rgb, grey, grey16, rgba, palette, palette with transparency, jpeg."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    paths = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        paths[name.split(".")[0]] = folder / name
        image.save(folder / name, **kwargs)

    save("rgb.png", Image.fromarray(rgb))
    save("grey.png", Image.fromarray(rgb[..., 0], mode="L"))
    save("grey16.png", Image.fromarray((rng.integers(0, 65536, (40, 48))).astype(np.uint16)))
    alpha = rng.integers(0, 256, (40, 48, 1), dtype=np.uint8)
    save("rgba.png", Image.fromarray(np.concatenate([rgb, alpha], -1), mode="RGBA"))
    save("palette.png", Image.fromarray(rgb).quantize(16))
    palette_t = Image.fromarray(rgb).quantize(16)
    save("palette_t.png", palette_t, transparency=0)
    save("photo.jpg", Image.fromarray(rgb), quality=90)
    return paths
