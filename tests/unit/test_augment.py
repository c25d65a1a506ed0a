"""Training-crop augmentation (issue #11): flips, quarter turns and a random RGB order, drawn from the sample's
own generator; validation and test crops are never augmented; unknown names are a one-line user error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rvar.data.datamodule import DegradationDataModule
from rvar.data.datasets import CleanFolderDataset, PairedDataset, augment
from rvar.errors import UserError


def test_augment_permutes_channels_and_moves_pixels_without_changing_them():
    image = torch.rand(3, 8, 8)
    seen_orders, moved = set(), False
    for seed in range(40):
        out = augment(image, ("flip", "rotate", "channels"), torch.Generator().manual_seed(seed))
        assert out.shape == image.shape
        # the multiset of values per channel is the input's, in some channel order
        order = tuple(int(np.argmin([(out[c].flatten().sort().values - image[k].flatten().sort().values).abs().sum()
                                     for k in range(3)])) for c in range(3))
        assert sorted(order) == [0, 1, 2]
        seen_orders.add(order)
        moved |= not torch.equal(out[list(order).index(0)], image[0])
    assert len(seen_orders) == 6 and moved


def test_augment_gives_a_stacked_pair_the_same_transform():
    clean = torch.rand(3, 8, 8)
    for seed in range(10):
        out = augment(torch.cat([clean * 0.5, clean]), ("flip", "rotate", "channels"),
                      torch.Generator().manual_seed(seed))
        assert torch.allclose(out[:3], out[3:] * 0.5)


def test_only_named_augmentations_draw():
    image = torch.rand(3, 8, 8)
    assert torch.equal(augment(image, (), torch.Generator().manual_seed(0)), image)
    flipped_only = augment(image, ("flip",), torch.Generator().manual_seed(3))
    assert torch.equal(flipped_only, image) or torch.equal(flipped_only, image.flip(-1))


def _photos(folder, count=2):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for number in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"p{number}.png")


def test_training_items_are_augmented_reproducibly_and_evaluation_items_never(tmp_path):
    _photos(tmp_path / "train")
    names = ("flip", "rotate", "channels")
    plain = CleanFolderDataset([tmp_path / "train"], 32, train=True, samples=8)
    augmented = CleanFolderDataset([tmp_path / "train"], 32, train=True, samples=8, augmentations=names)
    again = CleanFolderDataset([tmp_path / "train"], 32, train=True, samples=8, augmentations=names)
    changed = [not torch.equal(plain[k]["clean"], augmented[k]["clean"]) for k in range(8)]
    assert any(changed)
    assert all(torch.equal(augmented[k]["clean"], again[k]["clean"]) for k in range(8))
    evaluation = CleanFolderDataset([tmp_path / "train"], 32, train=False, augmentations=names)
    reference = CleanFolderDataset([tmp_path / "train"], 32, train=False)
    assert all(torch.equal(evaluation[k]["clean"], reference[k]["clean"]) for k in range(2))


def test_paired_training_crops_stay_aligned(tmp_path):
    for sub in ("input", "target"):
        (tmp_path / "rain" / sub).mkdir(parents=True)
    image = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "rain" / "target" / "a.png")
    Image.fromarray(255 - image).save(tmp_path / "rain" / "input" / "a.png")
    dataset = PairedDataset([tmp_path / "rain"], 32, train=True, samples=6,
                            augmentations=("flip", "rotate", "channels"))
    for key in range(6):
        item = dataset[key]
        assert torch.allclose(item["degraded"], 1 - item["clean"], atol=1e-6)


def test_unknown_augmentation_is_a_user_error():
    with pytest.raises(UserError, match=r"data.augment: unknown 'blur'; known: flip, rotate, channels"):
        DegradationDataModule(augment=["blur"])


def test_exposure_darkens_half_the_crops_by_at_most_half():
    image = torch.rand(3, 8, 8) * 0.5 + 0.25
    ratios = []
    for seed in range(200):
        out = augment(image, ("exposure",), torch.Generator().manual_seed(seed))
        ratio = out / image
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))  # one factor for the whole crop
        ratios.append(float(ratio.flatten()[0]))
    unchanged = sum(r == 1.0 for r in ratios)
    assert 70 <= unchanged <= 130 and min(ratios) >= 0.5 - 1e-6 and min(ratios) < 0.6


def test_train_exclude_leaves_matching_training_images_out_and_only_training_ones(tmp_path):
    """data.train_exclude: file-name patterns left out of the training folders (the tiny fidelity stage keeps the
    natural photos only); validation keeps every image; a pattern that leaves nothing is a one-line user error."""
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("dead_leaves_000.png", "dead_leaves_001.png", "kodak_kodim01.png", "wikimedia_002.png"):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / name)
    data = DegradationDataModule(train_dirs=[str(folder)], val_dirs=[str(folder)], crop_size=32, batch_size=2,
                                 degradations=[{"name": "gaussian_noise"}], train_exclude=["dead_leaves_*"])
    data.setup("fit")
    assert [p.name for p in data.datasets["train"].paths] == ["kodak_kodim01.png", "wikimedia_002.png"]
    assert len(data.datasets["val"].paths) == 4
    with pytest.raises(UserError, match="train_exclude .* leaves no image"):
        DegradationDataModule(train_dirs=[str(folder)], crop_size=32, train_exclude=["*.png"]).setup("fit")
    # train_include keeps only its matches (then train_exclude applies): one folder split between stages
    data = DegradationDataModule(train_dirs=[str(folder)], val_dirs=[str(folder)], crop_size=32, batch_size=2,
                                 degradations=[{"name": "gaussian_noise"}], train_include=["kodak_*", "dead_*"],
                                 train_exclude=["dead_leaves_001.png"])
    data.setup("fit")
    assert [p.name for p in data.datasets["train"].paths] == ["dead_leaves_000.png", "kodak_kodim01.png"]
    assert len(data.datasets["val"].paths) == 4
    with pytest.raises(UserError, match="train_include .* matches no image"):
        DegradationDataModule(train_dirs=[str(folder)], crop_size=32, train_include=["*.jpg"]).setup("fit")
