"""``DegradationDataModule``: clean photos degraded on the fly, paired folders or manifests, one batch contract.

Every batch the LightningModules see (after ``on_after_batch_transfer``) is a dict::

    {"degraded": float32 (B, 3, H, W) in [0, 1], "clean": float32 (B, 3, H, W) in [0, 1],
     "degradation": list[str] of length B, "index": LongTensor (B,)}

Before the hook, batches of clean-folder sources also carry ``plan`` (B, ops), each sample's degradation plan as
drawn by the worker (which applied its Albumentations ops); the hook applies its batched Kornia ops on the
accelerator and drops it (see :mod:`rvar.data.degrade`). Validation and test samples are deterministic.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import lightning as L
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from rvar.data.datasets import CleanFolderDataset, EpochSampler, PairedDataset, check_augmentations, source_kind
from rvar.data.degrade import DEFAULT_DEGRADATIONS, DegradationPipeline
from rvar.data.embedded import ensure_embedded
from rvar.data.evaluation import PROTOCOLS
from rvar.data.published import SAMPLERS, TRAIN_TRANSFORMS, VAL_TRANSFORMS, BalancedSampler, balanced_total
from rvar.pixels import whole_image_context
from rvar.errors import UserError

def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and crop; many threads each would oversubscribe the CPU


BATCH_STAGES = ("device", "workers")


def finish_batch(batch: Dict[str, Any], pipeline: Optional[DegradationPipeline], crop_size: int) -> Dict[str, Any]:
    """The batch stage of a collated batch: apply the batched (Kornia) ops of its ``plan`` where the batch is, then
    drop ``plan``; with ``tile`` (``context_size``), the degraded region becomes ``context`` and its tile the sample.
    The result depends on the plans only, so it is the same in a loader worker and on the accelerator."""
    plans = batch.pop("plan", None)
    if plans is not None and pipeline is not None and pipeline.has_device_ops:
        batch["degraded"] = pipeline.apply(batch["degraded"], plans, device_ops=True)
    tiles = batch.pop("tile", None)
    if tiles is not None:
        batch["context"] = whole_image_context(batch["degraded"], crop_size).clamp(0, 1)
        for key in ("degraded", "clean"):
            batch[key] = torch.stack([image[:, y:y + crop_size, x:x + crop_size]
                                      for image, (y, x) in zip(batch[key], tiles.tolist())])
    return batch


class _CollateAndFinish:
    """A loader's ``collate_fn`` that also runs :func:`finish_batch` in the worker (``data.batch_stage`` workers):
    on a CPU-only run the batched degradations then overlap the training step instead of adding to it."""

    def __init__(self, pipeline: Optional[DegradationPipeline], crop_size: int) -> None:
        self.pipeline, self.crop_size = pipeline, crop_size

    def __call__(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return finish_batch(default_collate(samples), self.pipeline, self.crop_size)


class DegradationDataModule(L.LightningDataModule):
    """Image-restoration data for every rvar stage.

    Each of ``train_dirs``, ``val_dirs`` and ``test_dirs`` lists sources of one kind: clean-image folders
    (degraded on the fly by the pipeline), or paired sources: paired folders (``input/`` + ``target/``),
    ``.json`` manifests and named datasets in their published layouts (``{name: sots-outdoor, root: ...}``, see
    :mod:`rvar.data.layouts`). Left empty, training uses the embedded scikit-image photos and validation their ``val`` split.

    Args:
        train_dirs: training sources; None: the embedded photos (``train`` split).
        val_dirs: validation sources; None: the embedded ``val`` split when training on embedded photos, else none.
        test_dirs: test (and predict) sources; None: the validation sources.
        paired_dirs: paired training folders (take precedence over ``train_dirs``).
        manifest: a training manifest (takes precedence over ``paired_dirs`` and ``train_dirs``).
        crop_size: square crop side in pixels.
        batch_size: samples per batch (per device).
        num_workers: dataloader worker processes.
        degradations: the pipeline, a list like ``[{name: rain, p: 1.0, weight: 2.0, options: {...}}]``;
            None: haze, rain, snow, low_light, motion_blur (RestoreVAR's five tasks).
        pipeline_mode: ``one_of`` (one op per sample, by weight) or ``chain`` (each op with its ``p``).
        seed: base seed of crops and degradations.
        samples_per_epoch: training samples per epoch, drawn with replacement; None: one per image/pair.
        val_samples: validation samples (images are cycled, each with its own degradation); None: one per image.
        test_samples: test samples, as ``val_samples``.
        degradation_weights: relative weights per degradation label for paired/manifest training draws;
            None: every degradation equally likely.
        data_root: where the embedded photos live; None: ``$RVAR_DATA_HOME`` or ``~/.cache/rvar/embedded``.
        eval_protocol: how test/predict images are prepared: ``native`` (centre crops of ``crop_size``) or
            ``restorevar`` (the paper's: whole images, degraded and clean Lanczos-resized together to
            ``eval_size``; see :mod:`rvar.data.evaluation`). ``RestorerModule`` scores the way this names.
        eval_size: side of the ``restorevar`` protocol's resize (512 in the paper).
        eval_max_images: ``restorevar`` protocol: images per test source (5000 in the reference scripts; None: all).
        augment: training-crop augmentations, any of ``flip``, ``rotate``, ``channels`` (random RGB order) and
            ``exposure`` (darker crops), see :func:`rvar.data.datasets.augment`; None: none. Validation and test
            crops are never augmented.
        context_size: None, or whole-image context for a refiner with ``whole_image_context``: each sample is a
            region of this side (like a photo ``rvar restore`` tiles), degraded whole; batches then hold its
            ``crop_size`` tile as ``degraded``/``clean`` and the degraded region resized to ``crop_size`` as
            ``context``. Clean-image folders only.
        train_transform: paired training samples: ``crop`` (rvar: aligned random crops, small images upscaled)
            or ``restorevar`` (the published trainer: shorter side to 1.125 x crop_size with Lanczos, one random
            crop placed by the clean image). See :mod:`rvar.data.published`.
        val_transform: paired validation samples: ``crop`` (centre crops) or ``resize`` (the published trainer:
            Lanczos to crop_size x crop_size, aspect not kept).
        sampler: training draws from paired sources: ``keys`` (rvar: ``samples_per_epoch`` weighted draws per
            epoch) or ``balanced`` (the published sampler: ceil(pairs / global batch) x global batch draws with
            replacement, degradation types equally likely, seeded by the epoch, contiguous shares per rank).
        batch_stage: where the batched (Kornia) degradations and the context tiling run: ``device`` (in
            ``on_after_batch_transfer``, on the accelerator) or ``workers`` (in the loader workers' collate; needs
            ``num_workers`` > 0). Each sample's randomness is its plan's, so both give the same batches. On a
            CPU-only machine with cores to spare, ``workers`` takes the degradations off the training process;
            on 2 cores it gained nothing measurable (BENCHMARKS.md, steps per second).
        train_exclude: file-name patterns (``fnmatch``, e.g. ``dead_leaves_*``) of training images to leave out of
            clean-image folders; None: every image. The tiny fidelity stage fits on the embedded natural photos
            only, as it is judged on natural photos.
        train_include: file-name patterns of the only training images to keep (before ``train_exclude``); None:
            every image. Splits one folder between stages: the tiny restoration stages leave some photos out
            (``train_exclude``) and the fidelity stage fits on those alone (``train_include``), photos its
            restorer never trained on, as the photos it will meet.
    """

    def __init__(self, train_dirs: Optional[List[Union[str, Dict[str, Any]]]] = None,
                 val_dirs: Optional[List[Union[str, Dict[str, Any]]]] = None,
                 test_dirs: Optional[List[Union[str, Dict[str, Any]]]] = None,
                 paired_dirs: Optional[List[Union[str, Dict[str, Any]]]] = None,
                 manifest: Optional[str] = None, crop_size: int = 256, batch_size: int = 8, num_workers: int = 0,
                 degradations: Optional[List[Dict[str, Any]]] = None, pipeline_mode: str = "one_of",
                 seed: int = 0, samples_per_epoch: Optional[int] = None, val_samples: Optional[int] = None,
                 test_samples: Optional[int] = None, degradation_weights: Optional[Dict[str, float]] = None,
                 data_root: Optional[str] = None, eval_protocol: str = "native", eval_size: int = 512,
                 eval_max_images: Optional[int] = 5000, augment: Optional[List[str]] = None,
                 context_size: Optional[int] = None, train_transform: str = "crop", val_transform: str = "crop",
                 sampler: str = "keys", batch_stage: str = "device",
                 train_exclude: Optional[List[str]] = None, train_include: Optional[List[str]] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        for option, value, known in (("train_transform", train_transform, TRAIN_TRANSFORMS),
                                     ("val_transform", val_transform, VAL_TRANSFORMS), ("sampler", sampler, SAMPLERS)):
            if value not in known:
                raise UserError(f"data.{option}: unknown {value!r}; known: {', '.join(known)}")
        if sampler == "balanced" and samples_per_epoch is not None:
            raise UserError("data.sampler balanced draws ceil(pairs / global batch) x global batch samples per epoch: "
                            "leave data.samples_per_epoch null")
        self.train_transform, self.val_transform, self.sampler = train_transform, val_transform, sampler
        if batch_stage not in BATCH_STAGES:
            raise UserError(f"data.batch_stage: unknown {batch_stage!r}; known: {', '.join(BATCH_STAGES)}")
        if batch_stage == "workers" and int(num_workers) == 0:
            raise UserError("data.batch_stage workers needs loader workers: set data.num_workers to 1 or more")
        self.batch_stage = batch_stage
        self.train_exclude = [str(p) for p in train_exclude or []]
        self.train_include = [str(p) for p in train_include or []]
        self.augment = check_augmentations(augment)
        self.context_size = context_size
        if eval_protocol not in PROTOCOLS:
            raise UserError(f"data.eval_protocol: unknown {eval_protocol!r}; known: {', '.join(PROTOCOLS)}")
        self.eval_protocol, self.eval_size, self.eval_max_images = eval_protocol, int(eval_size), eval_max_images
        self.train_dirs, self.val_dirs, self.test_dirs = train_dirs, val_dirs, test_dirs
        self.paired_dirs, self.manifest = paired_dirs, manifest
        self.crop_size, self.batch_size, self.num_workers = int(crop_size), int(batch_size), int(num_workers)
        self.degradations = degradations if degradations is not None else [{"name": n} for n in DEFAULT_DEGRADATIONS]
        self.pipeline_mode, self.seed = pipeline_mode, int(seed)
        self.samples_per_epoch, self.val_samples, self.test_samples = samples_per_epoch, val_samples, test_samples
        self.degradation_weights, self.data_root = degradation_weights, data_root
        self.pipeline: Optional[DegradationPipeline] = None
        self.datasets: Dict[str, Optional[Dataset]] = {}

    # 1. where the data comes from -------------------------------------------------------------------------
    @property
    def uses_embedded(self) -> bool:
        return self.manifest is None and not self.paired_dirs and not self.train_dirs

    def _embedded(self, split: str) -> List[str]:
        return [str(ensure_embedded(self.data_root or None) / split)]

    def sources(self, stage: str) -> List[str]:
        """The source paths of ``stage`` (``train``, ``val`` or ``test``); may be empty for val/test."""
        if stage == "train":
            if self.manifest is not None:
                return [self.manifest]
            return list(self.paired_dirs or self.train_dirs or self._embedded("train"))
        if stage == "val":
            if self.val_dirs is not None:
                return list(self.val_dirs)
            return self._embedded("val") if self.uses_embedded else []
        return list(self.test_dirs) if self.test_dirs is not None else self.sources("val")

    # 2. Lightning hooks ----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.uses_embedded:
            ensure_embedded(self.data_root)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.pipeline is None:
            self.pipeline = DegradationPipeline(self.degradations, self.pipeline_mode, self.seed)
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "", ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self._build(split)

    def _build(self, split: str) -> Optional[Dataset]:
        sources = self.sources(split)
        if not sources:
            return None
        kinds = {source_kind(s) for s in sources}
        if split == "test" and self.eval_protocol == "restorevar":
            from rvar.data.evaluation import ProtocolDataset

            return ProtocolDataset(sources, self.eval_size, self.eval_max_images, self.pipeline, self.seed, split)
        train = split == "train"
        samples = {"train": self.samples_per_epoch, "val": self.val_samples, "test": self.test_samples}[split]
        published = {"train": (self.train_transform != "crop", self.sampler != "keys"),
                     "val": (self.val_transform != "crop",)}.get(split, ())
        if kinds == {"clean"} and any(published):
            raise UserError(f"data.train_transform / val_transform / sampler other than crop/keys need paired "
                            f"sources (paired folders, manifests, named datasets); {split} has clean folders")
        if kinds == {"clean"}:
            return CleanFolderDataset(sources, self.crop_size, train, samples, self.pipeline, self.seed, split,
                                      augmentations=self.augment, context_size=self.context_size,
                                      exclude=self.train_exclude if train else (),
                                      include=self.train_include if train else ())
        for option, patterns in (("train_exclude", self.train_exclude), ("train_include", self.train_include)):
            if train and patterns:
                raise UserError(f"data.{option} works with clean-image folders only; the training sources are paired")
        if self.context_size is not None:
            raise UserError(f"data.context_size works with clean-image folders only; {split} has paired sources")
        if "clean" in kinds:
            raise UserError(f"{split} sources mix clean folders with paired folders/manifests: {sources}")
        transform = {"train": self.train_transform, "val": self.val_transform}.get(split, "crop")
        dataset = PairedDataset(sources, self.crop_size, train, samples, self.seed, split, self.degradation_weights,
                                self.augment, transform=transform)
        if train and self.sampler == "balanced":
            total = balanced_total(len(dataset.entries), self.batch_size * self._replicas()[0])
            dataset.balanced_total = dataset.samples = total
        return dataset

    def _replicas(self) -> tuple:
        """(ranks, this rank) of the running trainer; (1, 0) without one."""
        split = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if split and split.get("num_replicas", 1) > 1:
            return int(split["num_replicas"]), int(split["rank"])
        return 1, 0

    def _loader(self, split: str, train: bool) -> DataLoader | List[DataLoader]:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        dataset = self.datasets[split]
        if dataset is None:
            return []
        sampler = self._train_sampler(len(dataset)) if train else None
        collate = _CollateAndFinish(self.pipeline, self.crop_size) if self.batch_stage == "workers" else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          worker_init_fn=_worker_init if self.num_workers > 0 else None, drop_last=False,
                          collate_fn=collate)

    def _train_sampler(self, samples: int) -> Sampler:
        """The training keys; under DDP split between ranks here, in :class:`EpochSampler`'s own order.

        Left to Lightning, the sampler would be wrapped with ``shuffle=True``, which permutes the keys again
        with Lightning's seed. Split in order (rank r gets keys r, r + W, ...), W ranks with batch b see per
        step the samples one process sees with batch W * b, so a DDP run trains like a single-process one.
        Lightning leaves a ``DistributedSampler`` as it is (and still calls ``set_epoch``).
        """
        if self.sampler == "balanced" and getattr(self.datasets.get("train"), "balanced_total", None):
            return BalancedSampler(samples, *self._replicas())
        sampler: Sampler = EpochSampler(samples, self.seed)
        split = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if split and split.get("num_replicas", 1) > 1:
            sampler = DistributedSamplerWrapper(sampler, num_replicas=split["num_replicas"], rank=split["rank"],
                                                shuffle=False)
        return sampler

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def predict_dataloader(self):
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Dict[str, Any], dataloader_idx: int = 0) -> Dict[str, Any]:
        """The device stage: apply the batched (Kornia) ops of the batch's ``plan`` where the batch is, then drop
        ``plan``. Lightning calls this after moving a batch; call it yourself when iterating without a Trainer."""
        return finish_batch(batch, self.pipeline, self.crop_size)  # a no-op when the workers finished it
