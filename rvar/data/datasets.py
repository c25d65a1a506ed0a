"""Datasets: clean-image folders (degraded on the fly), paired folders and RestoreVAR JSON manifests.

A *source* is one of:

* a **clean folder**: images, searched recursively; degradations come from a
  :class:`~rvar.data.degrade.DegradationPipeline`;
* a **paired folder**: ``input/`` and ``target/`` sub-folders whose files match by stem
  (``input/0001.png`` with ``target/0001.jpg``); the label is the folder's name;
* a **manifest** (``*.json``, RestoreVAR's format): a list of ``{image_path, target_path, degradation,
  dataset}`` entries, paths relative to the manifest's folder.

Keys and randomness. Training sets are indexed by keys ``epoch * samples + slot`` produced by
:class:`EpochSampler` (split in order between ranks under DDP; ``set_epoch`` is forwarded to it).
Everything random about a sample (which image, the crop, the degradation) comes from generators seeded by
``(seed, stream, key)``, so it is the same in any worker or rank. Training images are drawn *with replacement*,
so a handful of photos yields ``samples`` different crops per epoch. Validation and test keys are plain indices:
centre crops and the same degradations every epoch.

Images smaller than the crop are **upscaled** (bicubic, short side to the crop size) with one warning per file,
rather than skipped, so tiny sets still work. Unreadable files in a clean folder (truncated JPEGs included) are
skipped with one warning saying how many; a file that fails later, at decoding, is replaced by another image with
one warning.
"""
from __future__ import annotations

import fnmatch
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

from rvar.data.degrade import DegradationPipeline, sample_seed
from rvar.errors import ImageError, UserError
from rvar.io import IMAGE_SUFFIXES, open_image, read_image


def source_kind(source) -> str:
    """``"named"`` for a ``{name, root}`` mapping (:mod:`rvar.data.layouts`), else ``"manifest"``, ``"paired"`` or
    ``"clean"`` for a source path; a missing path raises UserError."""
    if isinstance(source, Mapping):
        from rvar.data.layouts import check_named_source

        check_named_source(source)
        return "named"
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".json":
        return "manifest"
    if not path.is_dir():
        raise UserError(f"{path}: no such folder or manifest")
    if (path / "input").is_dir() and (path / "target").is_dir():
        return "paired"
    return "clean"


_JPEG_SUFFIXES = (".jpg", ".jpeg")
_JPEG_TAIL = 4096  # bytes searched for the end-of-image marker; trailers past it cost one full decode


def _header_problem(path: Path) -> Optional[str]:
    """Why ``path`` is unusable, from its header (and, for a JPEG, its end); None when it looks whole.

    ``Image.verify()`` checks a PNG's chunks but not a JPEG's data, so a JPEG must end with its end-of-image
    marker (FF D9) within its last few KiB; one that does not (truncated, or a long trailer) is fully decoded.
    """
    try:
        with open_image(path) as img:  # rvar's pixel limit
            img.verify()
        if path.suffix.lower() in _JPEG_SUFFIXES:
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - _JPEG_TAIL))
                if b"\xff\xd9" not in handle.read():
                    read_image(path)
    except ImageError as exc:
        return str(exc)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return f"{path}: {exc}"
    return None


def scan_clean_folders(folders: Sequence[str | Path]) -> List[Path]:
    """Image files under ``folders`` (recursive, sorted) that look readable (see :func:`_header_problem`).

    Unreadable files are left out with ONE warning saying how many and naming them (the first ten).
    Raises UserError when nothing is left.
    """
    found, bad = [], []
    for folder in folders:
        if source_kind(folder) != "clean":
            raise UserError(f"{folder}: expected a folder of clean images")
        for path in sorted(Path(folder).rglob("*")):
            if not (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
                continue
            if _header_problem(path) is None:
                found.append(path)
            else:
                bad.append(str(path))
    if bad:
        more = f" (+{len(bad) - 10} more)" if len(bad) > 10 else ""
        warnings.warn(f"skipping {len(bad)} unreadable image(s) of {len(bad) + len(found)}: "
                      f"{', '.join(bad[:10])}{more}", stacklevel=2)
    if not found:
        raise UserError(f"no readable images in {', '.join(str(f) for f in folders)}")
    return found


@dataclass(frozen=True)
class PairEntry:
    """One degraded/clean pair."""

    input_path: Path
    target_path: Path
    degradation: str


def pairs_from_folder(folder: str | Path) -> List[PairEntry]:
    """Pairs from ``folder/input`` and ``folder/target`` matched by file stem; unmatched files warn once."""
    folder = Path(folder)

    def by_stem(sub: str) -> Dict[str, Path]:
        return {p.stem: p for p in sorted((folder / sub).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}

    inputs, targets = by_stem("input"), by_stem("target")
    unmatched = sorted(set(inputs) ^ set(targets))
    if unmatched:
        warnings.warn(f"{folder}: {len(unmatched)} file(s) without a partner skipped: {', '.join(unmatched)}",
                      stacklevel=2)
    stems = sorted(set(inputs) & set(targets))
    if not stems:
        raise UserError(f"{folder}: no input/target pairs with matching file names")
    return [PairEntry(inputs[s], targets[s], folder.name) for s in stems]


def pairs_from_manifest(manifest: str | Path) -> List[PairEntry]:
    """Entries of a RestoreVAR JSON manifest (paths relative to the manifest's folder)."""
    manifest = Path(manifest)
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{manifest}: cannot read manifest ({exc})") from None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{manifest}: a manifest is a non-empty JSON list of entries")
    out = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not {"image_path", "target_path"} <= set(entry):
            raise UserError(f"{manifest}: entry {number} needs image_path and target_path")
        out.append(PairEntry(manifest.parent / entry["image_path"], manifest.parent / entry["target_path"],
                             str(entry.get("degradation", "unknown"))))
    return out


def load_pairs(sources: Sequence) -> List[PairEntry]:
    """Pairs from paired folders, manifests and/or named datasets (``{name, root}``, :mod:`rvar.data.layouts`)."""
    out: List[PairEntry] = []
    for source in sources:
        kind = source_kind(source)
        if kind == "clean":
            raise UserError(f"{source}: expected a paired folder (input/ + target/), a .json manifest or a named "
                            f"dataset {{name, root}}")
        if kind == "named":
            from rvar.data.layouts import check_named_source, layout_pairs

            out.extend(PairEntry(*pair) for pair in layout_pairs(*check_named_source(source)))
        else:
            out.extend(pairs_from_folder(source) if kind == "paired" else pairs_from_manifest(source))
    return out


def fit_crop(image_CHW: torch.Tensor, size: int, path: Path) -> torch.Tensor:
    """Upscale (bicubic) an image whose short side is below ``size``, with one warning for the file."""
    height, width = image_CHW.shape[-2:]
    if min(height, width) >= size:
        return image_CHW
    warnings.warn(f"{path}: {width}x{height} is smaller than the {size}px crop; upscaling it", stacklevel=2)
    scale = size / min(height, width)
    new = (max(size, round(height * scale)), max(size, round(width * scale)))
    return F.interpolate(image_CHW[None], size=new, mode="bicubic", align_corners=False)[0].clamp(0, 1)


def crop(image_CHW: torch.Tensor, size: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A ``size`` square of an image at least that large: random with a generator, the centre without."""
    height, width = image_CHW.shape[-2:]
    if generator is None:
        top, left = (height - size) // 2, (width - size) // 2
    else:
        top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return image_CHW[:, top:top + size, left:left + size].contiguous()


AUGMENTATIONS = ("flip", "rotate", "channels", "exposure")


def augment(image_CHW: torch.Tensor, names: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """A training crop, randomly flipped left-right (``flip``), turned by a multiple of 90 degrees (``rotate``)
    and given a random order of its RGB channels (``channels``: orange becomes blue or green, so a few warm
    photos and the dead-leaves images coloured from them cover the colours of skies and foliage too); half the
    crops darkened by a factor from 1 to 1/2 (``exposure``: dark scenes such as night skies are clean images too,
    not only the low-light degradation's outputs).

    ``image_CHW`` may stack several aligned RGB images (C = 3k, e.g. a degraded/clean pair): all get the same
    transform. Only the named augmentations draw from ``generator``."""
    if "flip" in names and bool(torch.rand(1, generator=generator) < 0.5):
        image_CHW = image_CHW.flip(-1)
    if "rotate" in names:
        image_CHW = torch.rot90(image_CHW, int(torch.randint(0, 4, (1,), generator=generator)), (-2, -1))
    if "channels" in names:
        order = torch.randperm(3, generator=generator)
        image_CHW = image_CHW[torch.cat([order + start for start in range(0, image_CHW.shape[0], 3)])]
    if "exposure" in names and bool(torch.rand(1, generator=generator) < 0.5):
        image_CHW = image_CHW * float(0.5 ** torch.rand(1, generator=generator))
    return image_CHW.contiguous()


def check_augmentations(names: Optional[Sequence[str]]) -> tuple:
    """``names`` as a tuple, or a :class:`UserError` naming an unknown one."""
    unknown = [n for n in names or () if n not in AUGMENTATIONS]
    if unknown:
        raise UserError(f"data.augment: unknown {', '.join(map(repr, unknown))}; known: {', '.join(AUGMENTATIONS)}")
    return tuple(names or ())


class EpochSampler(Sampler[int]):
    """Yields the training keys ``epoch * samples + slot`` for ``slot`` in ``range(samples)``.

    Lightning calls :meth:`set_epoch` (directly, or through the distributed wrapper that splits the keys
    between ranks under DDP, see ``DegradationDataModule``), so each epoch gets fresh crops and degradations.
    """

    def __init__(self, samples: int, seed: int = 0, shuffle: bool = True) -> None:
        self.samples, self.seed, self.shuffle, self.epoch = int(samples), int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        order = range(self.samples)
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, "sampler", self.epoch))
            order = torch.randperm(self.samples, generator=generator).tolist()
        return iter([self.epoch * self.samples + slot for slot in order])

    def __len__(self) -> int:
        return self.samples


class _KeyedDataset(Dataset):
    """Shared key handling: training keys fold in the epoch, evaluation keys are indices."""

    def __init__(self, crop_size: int, train: bool, samples: int, seed: int, stream: str,
                 augmentations: Sequence[str] = ()) -> None:
        self.crop_size, self.train, self.samples = int(crop_size), train, int(samples)
        self.seed, self.stream = int(seed), stream
        self.augmentations = check_augmentations(augmentations) if train else ()

    def __len__(self) -> int:
        return self.samples

    def generator(self, key: int, purpose: str) -> torch.Generator:
        return torch.Generator().manual_seed(sample_seed(self.seed, f"{self.stream}/{purpose}", key))


class CleanFolderDataset(_KeyedDataset):
    """Crops of clean images, degraded by ``pipeline`` (worker ops here, device ops after transfer from ``plan``).

    Args:
        folders: clean-image folders.
        crop_size: square crop side in pixels.
        train: random crops of images drawn with replacement (True), or centre crops in order (False).
        samples: dataset length; default the number of images.
        pipeline: the degradation pipeline (None: degraded == clean, label ``"none"``).
        seed: base seed for crops and degradations.
        stream: name separating the random streams of train/val/test.
        augmentations: names from :data:`AUGMENTATIONS` applied to training crops before degrading them.
        context_size: None, or the side of a larger region that is cropped and degraded whole instead; the item
            then also holds ``tile``, the (top, left) of the ``crop_size`` tile the model trains on (random for
            training, the centre otherwise), cut out after the device stage (``DegradationDataModule``).

    Items: ``clean`` and ``degraded`` (3, crop, crop) float32, ``degradation`` label, ``index`` key and, with a
    pipeline, ``plan`` (its device ops still to apply, see :mod:`rvar.data.degrade`).
    """

    def __init__(self, folders: Sequence[str | Path], crop_size: int, train: bool, samples: Optional[int] = None,
                 pipeline: Optional[DegradationPipeline] = None, seed: int = 0, stream: str = "train",
                 cache_bytes: int = 512 * 2**20, augmentations: Sequence[str] = (),
                 context_size: Optional[int] = None, exclude: Sequence[str] = (),
                 include: Sequence[str] = ()) -> None:
        self.paths = scan_clean_folders(folders)
        if include:  # file-name patterns kept, the rest left out (data.train_include)
            self.paths = [p for p in self.paths if any(fnmatch.fnmatch(p.name, pattern) for pattern in include)]
            if not self.paths:
                raise UserError(f"data.train_include {list(include)} matches no image in "
                                f"{', '.join(map(str, folders))}")
        if exclude:  # file-name patterns left out (data.train_exclude)
            self.paths = [p for p in self.paths if not any(fnmatch.fnmatch(p.name, pattern) for pattern in exclude)]
            if not self.paths:
                raise UserError(f"data.train_exclude {list(exclude)} leaves no image in {', '.join(map(str, folders))}")
        super().__init__(crop_size, train, samples or len(self.paths), seed, stream, augmentations)
        if context_size is not None and context_size < crop_size:
            raise UserError(f"data.context_size {context_size} is smaller than data.crop_size {crop_size}")
        self.context_size = context_size
        self.region = context_size or self.crop_size
        self.pipeline = pipeline
        # decoded images, kept while they fit in cache_bytes (per process): decoding a large PNG costs far
        # more than cropping and degrading it, and training draws many crops from few photos
        self.cache_bytes, self._cache, self._cached_bytes = int(cache_bytes), {}, 0
        self._unreadable: set = set()

    def image(self, number: int) -> torch.Tensor:
        """Image ``number`` as (3, H, W) in [0, 1], at least crop-sized; decoded once while the cache has room.

        A file that fails to decode although the scan passed it (damaged later, or a damage the scan cannot
        see) is replaced by the next readable image, with one warning per file and process."""
        for offset in range(len(self.paths)):
            candidate = (number + offset) % len(self.paths)
            if candidate in self._cache:
                return self._cache[candidate]
            if candidate in self._unreadable:
                continue
            try:
                return self._decode(candidate)
            except ImageError as exc:
                self._unreadable.add(candidate)
                warnings.warn(f"{exc}; using another image in its place", stacklevel=2)
        raise UserError(f"no readable images left among the {len(self.paths)} scanned ({self.paths[0].parent}, ...)")

    def _decode(self, number: int) -> torch.Tensor:
        path = self.paths[number]
        image_CHW = fit_crop(read_image(path).rgb, self.region, path)
        size = image_CHW.numel() * image_CHW.element_size()
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[number] = image_CHW
            self._cached_bytes += size
        return image_CHW

    def __getitem__(self, key: int) -> Dict[str, object]:
        crop_gen = self.generator(key, "crop") if self.train else None
        number = int(torch.randint(0, len(self.paths), (1,), generator=crop_gen)) if self.train \
            else key % len(self.paths)
        clean_CHW = crop(self.image(number), self.region, crop_gen)
        if self.augmentations:
            clean_CHW = augment(clean_CHW, self.augmentations, crop_gen)
        item = {"degraded": clean_CHW, "clean": clean_CHW, "degradation": "none", "index": key}
        if self.context_size is not None:
            free = self.region - self.crop_size
            item["tile"] = torch.randint(0, free + 1, (2,), generator=crop_gen) if self.train \
                else torch.tensor([free // 2, free // 2])
        if self.pipeline is not None:
            item.update(self.pipeline.worker_stage(clean_CHW, sample_seed(self.seed, self.stream, key)))
        return item


class PairedDataset(_KeyedDataset):
    """Aligned crops of degraded/clean pairs from paired folders, manifests and named datasets.

    For training, pairs are drawn with replacement, weighted per degradation: by default every degradation
    is equally likely whatever its number of pairs (RestoreVAR balances its five tasks this way);
    ``degradation_weights`` sets other relative weights (missing names get 1.0).

    Args:
        sources: paired folders, ``.json`` manifests and/or ``{name, root}`` named datasets.
        crop_size: square crop side in pixels.
        train: random aligned crops of weighted draws (True) or centre crops in order (False).
        samples: dataset length; default the number of pairs.
        seed: base seed.
        stream: name of the random stream.
        degradation_weights: relative weight per degradation label, for training draws.
        augmentations: names from :data:`AUGMENTATIONS`, the same transform for a training pair's two crops.
        transform: ``crop`` (rvar: aligned crops, images under the crop upscaled), ``restorevar`` (training: the
            reference's resize-then-crop) or ``resize`` (evaluation: Lanczos to crop x crop); see
            :mod:`rvar.data.published`.
        balanced_total: None, or the draws per epoch of the reference's balanced sampler: training keys
            ``epoch * total + position`` then name the pair :func:`~rvar.data.published.balanced_draw` put there.
    """

    def __init__(self, sources: Sequence, crop_size: int, train: bool, samples: Optional[int] = None,
                 seed: int = 0, stream: str = "train", degradation_weights: Optional[Mapping[str, float]] = None,
                 augmentations: Sequence[str] = (), transform: str = "crop",
                 balanced_total: Optional[int] = None) -> None:
        self.entries = load_pairs(sources)
        super().__init__(crop_size, train, samples or balanced_total or len(self.entries), seed, stream,
                         augmentations)
        counts: Dict[str, int] = {}
        for entry in self.entries:
            counts[entry.degradation] = counts.get(entry.degradation, 0) + 1
        weights = degradation_weights or {}
        self.weights = torch.tensor([float(weights.get(e.degradation, 1.0)) / counts[e.degradation]
                                     for e in self.entries], dtype=torch.float64)
        self.transform, self.balanced_total = transform, balanced_total
        self._draw: tuple = (None, None)  # (epoch, that epoch's balanced draw)

    def pair_number(self, key: int, generator: Optional[torch.Generator]) -> int:
        if not self.train:
            return key % len(self.entries)
        if self.balanced_total is None:
            return int(torch.multinomial(self.weights, 1, generator=generator))
        from rvar.data.published import balanced_draw

        epoch, position = divmod(int(key), self.balanced_total)
        if self._draw[0] != epoch:
            labels = [e.degradation for e in self.entries]
            self._draw = (epoch, balanced_draw(labels, self.balanced_total, epoch + self.seed))
        return int(self._draw[1][position])

    def __getitem__(self, key: int) -> Dict[str, object]:
        crop_gen = self.generator(key, "crop") if self.train else None
        entry = self.entries[self.pair_number(key, crop_gen)]
        degraded_CHW, clean_CHW = read_image(entry.input_path).rgb, read_image(entry.target_path).rgb
        if self.transform != "crop":
            from rvar.data.published import restorevar_train_pair, restorevar_val_pair

            degraded_CHW, clean_CHW = (
                restorevar_train_pair(degraded_CHW, clean_CHW, self.crop_size, crop_gen, str(entry.input_path))
                if self.train else restorevar_val_pair(degraded_CHW, clean_CHW, self.crop_size))
            return {"degraded": degraded_CHW, "clean": clean_CHW, "degradation": entry.degradation, "index": key}
        if degraded_CHW.shape != clean_CHW.shape:
            raise ImageError(f"{entry.input_path}: size {tuple(degraded_CHW.shape[1:])} differs from its target "
                             f"{entry.target_path} {tuple(clean_CHW.shape[1:])}")
        both_CHW = crop(fit_crop(torch.cat([degraded_CHW, clean_CHW]), self.crop_size, entry.input_path),
                        self.crop_size, crop_gen)
        if self.augmentations:
            both_CHW = augment(both_CHW, self.augmentations, crop_gen)
        return {"degraded": both_CHW[:3], "clean": both_CHW[3:], "degradation": entry.degradation, "index": key}
