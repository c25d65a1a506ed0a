import os

import numpy as np
import pytest
import torch
from PIL import Image

from rvar.errors import ImageError, UserError
from rvar.io import iter_images, read_image, save_grid, write_image


def test_rgb_round_trip(tmp_images, tmp_path):
    loaded = read_image(tmp_images["rgb"])
    assert loaded.rgb.shape == (3, 40, 48) and loaded.rgb.dtype == torch.float32
    assert loaded.mode == "RGB" and loaded.alpha is None and loaded.bit_depth == 8
    out = write_image(tmp_path / "out" / "rgb.png", loaded.rgb, like=loaded)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(tmp_images["rgb"])))


def test_grey_round_trip(tmp_images, tmp_path):
    loaded = read_image(tmp_images["grey"])
    assert loaded.mode == "L" and loaded.rgb.shape[0] == 3
    out = write_image(tmp_path / "grey.png", loaded.rgb, like=loaded)
    with Image.open(out) as img:
        assert img.mode == "L"
        assert np.array_equal(np.asarray(img), np.asarray(Image.open(tmp_images["grey"])))


def test_grey16_round_trip(tmp_images, tmp_path):
    loaded = read_image(tmp_images["grey16"])
    assert loaded.mode == "L" and loaded.bit_depth == 16
    out = write_image(tmp_path / "g16.png", loaded.rgb, like=loaded)
    with Image.open(out) as img, Image.open(tmp_images["grey16"]) as original:
        assert img.mode.startswith("I")
        assert np.abs(np.asarray(img).astype(int) - np.asarray(original).astype(int)).max() <= 1


def test_rgba_round_trip_keeps_alpha(tmp_images, tmp_path):
    loaded = read_image(tmp_images["rgba"])
    assert loaded.mode == "RGBA" and loaded.alpha.shape == (1, 40, 48)
    out = write_image(tmp_path / "rgba.png", loaded.rgb, like=loaded)
    with Image.open(out) as img, Image.open(tmp_images["rgba"]) as original:
        assert img.mode == "RGBA"
        assert np.array_equal(np.asarray(img), np.asarray(original))


def test_palette_images(tmp_images):
    plain = read_image(tmp_images["palette"])
    assert plain.mode == "RGB" and plain.alpha is None
    with_transparency = read_image(tmp_images["palette_t"])
    assert with_transparency.mode == "RGBA" and with_transparency.alpha is not None
    assert float(with_transparency.alpha.min()) == 0.0


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tif", ".webp"])
def test_formats_from_suffix(tmp_images, tmp_path, suffix):
    loaded = read_image(tmp_images["rgba"])
    out = write_image(tmp_path / f"x{suffix}", loaded.rgb, like=loaded)
    assert read_image(out).rgb.shape == (3, 40, 48)


def test_corrupt_truncated_and_non_images_raise(tmp_images, tmp_path):
    data = tmp_images["rgb"].read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(tmp_images["photo"].read_bytes()[:200])
    for path in (truncated, text, garbage, tmp_path / "missing.png"):
        with pytest.raises(ImageError, match=str(path.name)):
            read_image(path)


def test_never_overwrites_an_input(tmp_images):
    loaded = read_image(tmp_images["rgb"])
    before = tmp_images["rgb"].read_bytes()
    with pytest.raises(UserError, match="overwrite"):
        write_image(tmp_images["rgb"], 1 - loaded.rgb, inputs={tmp_images["rgb"]})
    assert tmp_images["rgb"].read_bytes() == before


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    write_image(tmp_path / "a" / "b" / "c.png", torch.rand(3, 8, 8))
    assert os.listdir(tmp_path / "a" / "b") == ["c.png"]
    with pytest.raises(UserError, match="suffix"):
        write_image(tmp_path / "c.xyz", torch.rand(3, 8, 8))


def test_iter_images(tmp_images, tmp_path):
    folder = tmp_images["rgb"].parent
    (folder / "readme.txt").write_text("skip me")
    found = iter_images([str(folder)])
    assert [rel.name for _, rel in found] == sorted(p.name for p in tmp_images.values())
    with pytest.raises(UserError, match="no such"):
        iter_images([str(tmp_path / "nowhere")])


def test_save_grid(tmp_path):
    rows = [[torch.rand(3, 20, 30), None], [torch.rand(3, 30, 20), torch.rand(3, 30, 20)]]
    out = save_grid(tmp_path / "grid.png", rows, ["clean", "rain"], ["a", "b"], cell=40)
    with Image.open(out) as img:
        assert img.width >= 80 and img.height >= 80
