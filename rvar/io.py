"""Image input/output shared by every ``rvar`` command.

Images travel through rvar as float32 tensors ``rgb_3HW`` in [0, 1]; :func:`read_image` remembers what the file
was (grey, RGB or RGBA, 8 or 16 bits) so :func:`write_image` can give the result back in the same form.

Rules kept here so that no command has to remember them:

* a corrupt, truncated or non-image file raises :class:`~rvar.errors.ImageError` naming the file
  (``Image.load()`` is always called; ``LOAD_TRUNCATED_IMAGES`` is never set), and so does an image over the
  decompression-bomb limit (Pillow's, about 179 million pixels; ``RVAR_MAX_IMAGE_PIXELS`` sets another, 0: none);
* the EXIF orientation is applied on reading, so a result is stored upright, as viewers showed its input;
* formats Pillow reads but rvar does not write (GIF, PPM, TGA, ...) give their first frame, and
  :func:`output_relative_path` names their result ``.png``;
* writes are atomic (temporary file in the destination folder, then :func:`os.replace`);
* an input file is never overwritten.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from rvar.errors import ImageError, UserError
from rvar.files import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
            ".webp": "WEBP"}
# read (first frame) but not written: their results are PNG files, see output_relative_path
CONVERTED_SUFFIXES = (".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga")
PIXEL_LIMIT_VARIABLE = "RVAR_MAX_IMAGE_PIXELS"
_ORIENTATION = 0x0112  # the EXIF tag


@dataclass
class LoadedImage:
    """An image read from disk.

    Attributes:
        rgb: float32 tensor (3, H, W) in [0, 1]; grey images are replicated to three channels.
        mode: the original colour mode, one of ``"L"``, ``"RGB"``, ``"RGBA"``.
        alpha: float32 tensor (1, H, W) in [0, 1], or None when the image has no transparency.
        bit_depth: 8 or 16. Pillow decodes 16-bit grey exactly; it reduces 16-bit-per-channel colour PNGs to
            8 bits on reading, so those report 8 (and are written back as 8-bit colour).
        path: where it was read from.
    """

    rgb: torch.Tensor
    mode: str
    alpha: Optional[torch.Tensor]
    bit_depth: int
    path: Path


def _to_float(array: np.ndarray, scale: float) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / scale)


def pixel_limit() -> Optional[int]:
    """Largest image (in pixels) rvar decodes: ``$RVAR_MAX_IMAGE_PIXELS`` (0: no limit), else Pillow's
    decompression-bomb limit (twice ``Image.MAX_IMAGE_PIXELS``)."""
    value = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not value:
        return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        raise UserError(f"{PIXEL_LIMIT_VARIABLE}={value!r}: expected a number of pixels (0: no limit)") from None
    return limit if limit > 0 else None


def open_image(path: Path) -> Image.Image:
    """``Image.open`` with rvar's pixel limit (:func:`pixel_limit`) instead of Pillow's. Pillow checks its limit
    inside ``Image.open`` against a module global, with no per-call argument, so the global is lifted for the
    call only; rvar then checks the header's size before anything is decoded."""
    limit = pixel_limit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    if limit is not None and img.width * img.height > limit:
        img.close()
        raise ImageError(f"{path}: {img.width}x{img.height} is {img.width * img.height:,} pixels, over the "
                         f"decompression-bomb limit of {limit:,}; if you trust the file, raise the limit with "
                         f"{PIXEL_LIMIT_VARIABLE}={img.width * img.height} (0: no limit)")
    return img


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image file into a :class:`LoadedImage`, upright (EXIF orientation applied), first frame only.

    Args:
        path: an image file (PNG, JPEG, BMP, TIFF, WebP, GIF, ...; grey, RGB, RGBA, palette, 16-bit).

    Raises:
        ImageError: the file is missing, not an image, corrupt, truncated or over :func:`pixel_limit`.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with open_image(path) as img:
            img.load()  # decodes everything: a truncated file fails here
            return _from_pil(_upright(img), path)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says (as viewers show it); as stored when the EXIF is damaged."""
    try:
        if img.getexif().get(_ORIENTATION, 1) in (1, None):
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - EXIF parsing raises many types; a bad tag must not lose a readable image
        return img


def _from_pil(img: Image.Image, path: Path) -> LoadedImage:
    mode = img.mode
    if mode == "P":  # palette: transparency lives in img.info
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img).astype(np.float32)
        peak = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = _to_float(array, peak).clamp(0, 1)
        return LoadedImage(grey[None].expand(3, -1, -1).clone(), "L", None, 16 if peak > 255 else 8, path)
    if mode == "RGB" and img.info.get("transparency") is not None:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("L", "1"):
        if "transparency" in img.info:
            img, mode = img.convert("LA"), "LA"
        else:
            grey = _to_float(np.asarray(img.convert("L")), 255.0)
            return LoadedImage(grey[None].expand(3, -1, -1).clone(), "L", None, 8, path)
    if mode == "LA":
        array = np.asarray(img)
        grey, alpha = _to_float(array[..., 0], 255.0), _to_float(array[..., 1], 255.0)
        return LoadedImage(grey[None].expand(3, -1, -1).clone(), "L", alpha[None], 8, path)
    if mode == "RGBA":
        array = np.asarray(img)
        rgb = _to_float(array[..., :3], 255.0).permute(2, 0, 1).contiguous()
        return LoadedImage(rgb, "RGBA", _to_float(array[..., 3], 255.0)[None], 8, path)
    if mode in ("RGB;16", "RGB;16B", "RGB;16L"):  # 16-bit-per-channel, as some Pillow builds expose it
        array = np.asarray(img).astype(np.float32)
        return LoadedImage(_to_float(array, 65535.0).permute(2, 0, 1).contiguous(), "RGB", None, 16, path)
    if mode not in ("RGB",):
        img = img.convert("RGB")
    rgb = _to_float(np.asarray(img), 255.0).permute(2, 0, 1).contiguous()
    return LoadedImage(rgb, "RGB", None, 8, path)


def _check_not_input(path: Path, inputs: Iterable[Path]) -> None:
    target = path.resolve()
    for item in inputs:
        if Path(item).resolve() == target:
            raise UserError(f"{path}: refusing to overwrite an input image; choose another output folder")


def write_image(path: str | os.PathLike, rgb_3HW: torch.Tensor, like: Optional[LoadedImage] = None,
                inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write ``rgb_3HW`` (float in [0, 1]) atomically, in the colour mode of ``like`` when given.

    Args:
        path: destination; the format comes from the suffix (png, jpg/jpeg, bmp, tif/tiff, webp).
            Parent folders are created.
        rgb_3HW: tensor (3, H, W) in [0, 1] (values outside are clamped).
        like: the image this result came from: grey is written back as grey (channel mean), an alpha
            channel of the same size is re-attached, 16 bits are kept for PNG/TIFF.
        inputs: paths that must never be overwritten (the command's input images).

    Returns:
        The path written.

    Raises:
        UserError: ``path`` is one of ``inputs`` or has an unsupported suffix.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported image suffix; use one of {', '.join(IMAGE_SUFFIXES)}")
    _check_not_input(path, inputs)
    rgb = rgb_3HW.detach().float().cpu().clamp(0, 1)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"write_image expects a (3, H, W) tensor, got {tuple(rgb.shape)}")
    img = _to_pil(rgb, like, fmt)
    return atomic_write(path, lambda handle: img.save(handle, format=fmt,
                                                      **({"quality": 95} if fmt in ("JPEG", "WEBP") else {})))


def _to_pil(rgb: torch.Tensor, like: Optional[LoadedImage], fmt: str) -> Image.Image:
    mode = like.mode if like is not None else "RGB"
    sixteen = like is not None and like.bit_depth == 16 and fmt in ("PNG", "TIFF")
    alpha = like.alpha if like is not None and like.alpha is not None else None
    if alpha is not None and alpha.shape[-2:] != rgb.shape[-2:]:
        alpha = torch.nn.functional.interpolate(alpha[None], size=rgb.shape[-2:], mode="bilinear",
                                                align_corners=False)[0]
    if fmt in ("JPEG", "BMP"):
        alpha = None  # these formats carry no alpha
    a8 = None if alpha is None else np.round(alpha[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
    if mode == "L":
        grey = rgb.mean(0).numpy()
        if sixteen and a8 is None:
            return Image.fromarray(np.round(grey * 65535).astype(np.uint16))
        grey8 = np.round(grey * 255).astype(np.uint8)
        return Image.fromarray(grey8, mode="L") if a8 is None else Image.fromarray(np.stack([grey8, a8], -1), mode="LA")
    rgb8 = to_uint8_hwc(rgb)
    return Image.fromarray(rgb8, mode="RGB") if a8 is None else \
        Image.fromarray(np.concatenate([rgb8, a8[..., None]], -1), mode="RGBA")


def iter_images(inputs: Sequence[str | os.PathLike],
                exclude: Optional[str | os.PathLike] = None) -> List[Tuple[Path, Path]]:
    """Expand files and folders into ``(path, relative_path)`` pairs, each file once.

    Folders are searched recursively and sorted; only files with an image suffix (written ones and
    :data:`CONVERTED_SUFFIXES`) are kept. A file named directly is kept whatever its suffix (so a bad file is
    reported by :func:`read_image`, not ignored). A file reached twice (named twice, or through a folder and
    its sub-folder) is kept at its first appearance.

    Args:
        inputs: files and folders.
        exclude: a folder left out of folder searches (the output folder, when it lies inside an input folder;
            an input folder that is ``exclude`` itself is searched, so overwriting its files is refused).

    Raises:
        UserError: a path does not exist, or nothing was found.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: List[Tuple[Path, Path]] = []
    seen = set()

    def keep(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, relative))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            inside = skip if skip is not None and skip != path.resolve() else None  # -o FOLDER itself: refused
            for child in sorted(path.rglob("*")):
                if inside is not None and (child.resolve() == inside or inside in child.resolve().parents):
                    continue
                if child.is_file() and child.suffix.lower() in (*IMAGE_SUFFIXES, *CONVERTED_SUFFIXES):
                    keep(child, child.relative_to(path))
        elif path.is_file():
            keep(path, Path(path.name))
        else:
            raise UserError(f"{path}: no such file or folder")
    if not found:
        raise UserError(f"no images found in {', '.join(str(i) for i in inputs)}")
    return found


def output_relative_path(relative: str | os.PathLike) -> Path:
    """Where the result of ``relative`` goes: the same name, or ``.png`` for a format rvar does not write."""
    relative = Path(relative)
    return relative if relative.suffix.lower() in _FORMATS else relative.with_suffix(".png")


def to_uint8_hwc(rgb_3HW: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return np.round(rgb_3HW.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def save_grid(path: str | os.PathLike, rows: Sequence[Sequence[Optional[torch.Tensor]]],
              labels: Sequence[str], row_labels: Optional[Sequence[str]] = None, cell: int = 160,
              inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write a labelled contact sheet (PNG): one row per image, one column per label.

    Args:
        path: destination PNG.
        rows: ``rows[r][c]`` is a (3, H, W) tensor in [0, 1] or None for an empty cell.
        labels: one column title per column (``"clean"``, ``"rain"``, ... or ``"degraded | restored | clean"``).
        row_labels: optional text drawn at the top left of each row's first cell.
        cell: the longest side of each thumbnail, in pixels.
        inputs: paths that must never be overwritten.
    """
    n_cols = len(labels)
    if any(len(r) != n_cols for r in rows):
        raise ValueError("every row needs one tensor (or None) per label")
    font = ImageFont.load_default()
    title_h, pad = 18, 4
    sheet = Image.new("RGB", (pad + n_cols * (cell + pad), title_h + pad + len(rows) * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((pad + c * (cell + pad) + 2, 3), str(label)[: cell // 6], fill="black", font=font)
    for r, row in enumerate(rows):
        top = title_h + pad + r * (cell + pad)
        for c, tensor in enumerate(row):
            if tensor is None:
                continue
            thumb = Image.fromarray(to_uint8_hwc(tensor))
            scale = cell / max(thumb.width, thumb.height)  # small images are enlarged too
            thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))),
                                 Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)
            left = pad + c * (cell + pad)
            sheet.paste(thumb, (left + (cell - thumb.width) // 2, top + (cell - thumb.height) // 2))
        if row_labels:
            draw.rectangle((pad, top, pad + 6 * len(row_labels[r][:24]) + 4, top + 12), fill="black")
            draw.text((pad + 2, top), row_labels[r][:24], fill="white", font=font)
    path = Path(path)
    _check_not_input(path, inputs)
    return atomic_write(path, lambda handle: sheet.save(handle, format="PNG"))
