"""Issue #14.7: a truncated JPEG in a training folder is skipped at the scan, with a count; a file that breaks
after the scan is replaced at decoding, with one warning, instead of killing the run."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rvar.data.datasets import CleanFolderDataset, scan_clean_folders


def jpegs(folder: Path, count: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for number in range(count):
        paths.append(folder / f"photo_{number}.jpg")
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(paths[-1], quality=90)
    return paths


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_the_scan_skips_a_truncated_jpeg_and_counts_it(tmp_path):
    paths = jpegs(tmp_path / "train", 3)
    truncate(paths[1])
    with pytest.warns(UserWarning, match=r"skipping 1 unreadable image\(s\) of 3: .*photo_1\.jpg"):
        assert scan_clean_folders([tmp_path / "train"]) == [paths[0], paths[2]]


def test_a_file_broken_after_the_scan_is_replaced_with_one_warning(tmp_path):
    paths = jpegs(tmp_path / "train", 3)
    dataset = CleanFolderDataset([tmp_path / "train"], crop_size=32, train=True, samples=12, cache_bytes=0)
    truncate(paths[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[key] for key in range(12)]
    assert all(item["clean"].shape == (3, 32, 32) for item in items)
    about = [str(w.message) for w in caught if "photo_0.jpg" in str(w.message)]
    assert len(about) == 1 and "using another image" in about[0]
