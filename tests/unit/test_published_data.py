"""The published trainer's data path (rvar.data.published) and the paper's datasets in their published layouts
(rvar.data.layouts), on small replicas made here. What is checked is the fixture README's description of
sudraj2002/RestoreVAR's data preparation and each dataset's layout as its authors release it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rvar.data.datasets import PairedDataset, load_pairs
from rvar.data.layouts import LAYOUTS, MANIFEST_DEGRADATIONS, layout_pairs
from rvar.data.published import (BalancedSampler, balanced_draw, balanced_total, restorevar_train_pair,
                                 restorevar_val_pair)
from rvar.errors import UserError
from rvar.data.evaluation import ProtocolDataset
from rvar.eval.protocol import table1_set

RNG = np.random.default_rng(0)


def save(path: Path, height: int = 12, width: int = 16, value: int | None = None) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8) if value is None \
        else np.full((height, width, 3), value, np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return pixels


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float() / 255


# ---- transforms ------------------------------------------------------------------------------------------------
def test_training_transform_resizes_the_shorter_side_then_crops_both_at_the_clean_offsets():
    clean = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    degraded = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    crop = 16
    out_d, out_c = restorevar_train_pair(to_tensor(degraded), to_tensor(clean), crop, torch.Generator().manual_seed(3))
    # by hand: shorter side to round(1.125 * 16) = 18 with PIL's Lanczos (aspect kept: 60 * 18 / 40 = 27), then one
    # crop whose offsets are drawn from the clean image's size, in (top, left) order, from the same generator
    short = round(1.125 * crop)
    resized = [np.asarray(Image.fromarray(a).resize((27, short), Image.LANCZOS)) for a in (degraded, clean)]
    generator = torch.Generator().manual_seed(3)
    top = int(torch.randint(0, short - crop + 1, (1,), generator=generator))
    left = int(torch.randint(0, 27 - crop + 1, (1,), generator=generator))
    for got, want in zip((out_d, out_c), resized):
        assert got.shape == (3, crop, crop)
        assert torch.equal(got, to_tensor(np.ascontiguousarray(want[top:top + crop, left:left + crop])))
    assert 0.0 <= float(out_c.min()) and float(out_c.max()) <= 1.0  # batches stay [0, 1]; the model maps to 2x - 1


def test_training_transform_of_a_tall_image_and_its_random_offsets():
    tall = to_tensor(RNG.integers(0, 256, (50, 20, 3), dtype=np.uint8))
    positions = set()
    for seed in range(12):
        d, c = restorevar_train_pair(tall, tall, 8, torch.Generator().manual_seed(seed))
        assert torch.equal(d, c)  # the same offsets for both images
        positions.add(tuple(c[:, 0, 0].tolist()))
    assert len(positions) > 3  # offsets vary with the generator (resized to 9 x 22: many positions)


def test_validation_transform_is_a_straight_lanczos_resize():
    pixels = RNG.integers(0, 256, (30, 70, 3), dtype=np.uint8)
    d, c = restorevar_val_pair(to_tensor(pixels), to_tensor(pixels), 24)
    want = to_tensor(np.asarray(Image.fromarray(pixels).resize((24, 24), Image.LANCZOS)))
    assert torch.equal(d, want) and torch.equal(c, want)  # aspect not kept, no crop


# ---- balanced sampler --------------------------------------------------------------------------------------------
def test_balanced_draw_weights_each_degradation_type_equally():
    labels = ["Haze"] * 30 + ["Rain"] * 6 + ["Snow"] * 2
    assert balanced_total(len(labels), 48) == 48 and balanced_total(49, 48) == 96  # ceil(N / 48) * 48
    draw = balanced_draw(labels, 30000, seed=0)
    shares = torch.bincount(torch.tensor([["Haze", "Rain", "Snow"].index(labels[i]) for i in draw.tolist()]))
    assert torch.allclose(shares.double() / 30000, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)
    assert len(set(draw.tolist())) > 25  # with replacement, every pair can come up
    # the reference's computation: float64 weights 1/count, normalised, one multinomial from manual_seed(epoch)
    weights = torch.tensor([1 / 30] * 30 + [1 / 6] * 6 + [1 / 2] * 2, dtype=torch.float64)
    want = torch.multinomial(weights / weights.sum(), 96, replacement=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(balanced_draw(labels, 96, seed=5), want)


def test_balanced_sampler_splits_each_epoch_contiguously_across_ranks():
    total = balanced_total(13, 4)  # 16
    shares = [BalancedSampler(total, num_replicas=2, rank=r) for r in range(2)]
    for sampler in shares:
        sampler.set_epoch(3)
    assert [list(s) for s in shares] == [list(range(48, 56)), list(range(56, 64))]
    assert [len(s) for s in shares] == [8, 8]


def test_paired_dataset_follows_the_epochs_draw(tmp_path):
    for number in range(5):
        save(tmp_path / "haze" / "input" / f"{number}.png", 20, 24)
        save(tmp_path / "haze" / "target" / f"{number}.png", 20, 24)
    save(tmp_path / "snow" / "input" / "0.png", 20, 24)
    save(tmp_path / "snow" / "target" / "0.png", 20, 24)
    dataset = PairedDataset([tmp_path / "haze", tmp_path / "snow"], 16, train=True, seed=7,
                            transform="restorevar", balanced_total=balanced_total(6, 4))
    labels = [e.degradation for e in dataset.entries]
    for epoch in (0, 1):
        want = balanced_draw(labels, 8, seed=epoch + 7)  # seeded by the epoch (+ the data seed), same on all ranks
        got = [dataset.pair_number(epoch * 8 + position, None) for position in range(8)]
        assert got == want.tolist()
    item = dataset[9]
    assert item["degraded"].shape == (3, 16, 16) and item["degradation"] in ("haze", "snow")
    assert torch.equal(dataset[9]["clean"], item["clean"])  # a key is reproducible (crop seeded by the key)


def test_datamodule_uses_the_published_path(tmp_path):
    from rvar.data import DegradationDataModule

    for number in range(7):
        save(tmp_path / "pairs" / "input" / f"{number}.png", 20, 30)
        save(tmp_path / "pairs" / "target" / f"{number}.png", 20, 30)
    module = DegradationDataModule(train_dirs=[str(tmp_path / "pairs")], val_dirs=[str(tmp_path / "pairs")],
                                   crop_size=16, batch_size=4, train_transform="restorevar", val_transform="resize",
                                   sampler="balanced")
    module.setup("fit")
    loader = module.train_dataloader()
    assert isinstance(loader.sampler, BalancedSampler) and len(loader.sampler) == 8  # ceil(7 / 4) * 4
    batch = next(iter(loader))
    assert batch["clean"].shape == (4, 3, 16, 16)
    val = next(iter(module.val_dataloader()))
    assert val["clean"].shape == (4, 3, 16, 16)
    with pytest.raises(UserError, match="samples_per_epoch null"):
        DegradationDataModule(sampler="balanced", samples_per_epoch=100)
    with pytest.raises(UserError, match="data.sampler: unknown"):
        DegradationDataModule(sampler="shuffled")


# ---- datasets in their published layouts -----------------------------------------------------------------------------
def make_replicas(root: Path) -> dict:
    """Miniature copies of each published layout; returns {name: (root, pairs)}."""
    made = {}
    # RESIDE OTS: hazy/0001_0.8_0.2.jpg (several per clear image) <-> clear/0001.jpg; SOTS outdoor: hazy + gt/*.png
    for number in (1, 2):
        for beta in ("0.8_0.2", "0.9_0.16"):
            save(root / "OTS" / "hazy" / f"{number:04d}_{beta}.jpg")
        save(root / "OTS" / "clear" / f"{number:04d}.jpg")
        save(root / "SOTS" / "outdoor" / "hazy" / f"{number:04d}_0.8_0.2.jpg")
        save(root / "SOTS" / "outdoor" / "gt" / f"{number:04d}.png")
    made["reside-ots"], made["sots-outdoor"] = (root / "OTS", 4), (root / "SOTS", 2)
    # Rain13K (Restormer): input/target, same names; Rain100L as released: rain-001.png beside norain-001.png
    for number in (1, 2, 3):
        save(root / "Rain13K" / "input" / f"{number}.jpg")
        save(root / "Rain13K" / "target" / f"{number}.jpg")
        save(root / "Rain100L" / f"rain-{number:03d}.png")
        save(root / "Rain100L" / f"norain-{number:03d}.png")
        save(root / "Rain100H" / "input" / f"rain-{number:03d}.png")
        save(root / "Rain100H" / "target" / f"norain-{number:03d}.png")
    made["rain13k"], made["rain100l"], made["rain100h"] = (root / "Rain13K", 3), (root / "Rain100L", 3), \
        (root / "Rain100H", 3)
    # Snow100K: test/Snow100K-L/{synthetic,gt}
    for number in (1, 2):
        save(root / "Snow100K" / "test" / "Snow100K-L" / "synthetic" / f"beautiful_{number}.jpg")
        save(root / "Snow100K" / "test" / "Snow100K-L" / "gt" / f"beautiful_{number}.jpg")
    made["snow100k"] = (root / "Snow100K", 2)
    # LOLv1: our485/{low,high}, eval15/{low,high}
    for split, numbers in (("our485", (2, 5, 6)), ("eval15", (1, 22))):
        for number in numbers:
            save(root / "LOL" / split / "low" / f"{number}.png")
            save(root / "LOL" / split / "high" / f"{number}.png")
    made["lolv1"] = (root / "LOL", 5)
    # GoPro: train/<sequence>/{blur,sharp}/000047.png; the same frame names in different sequences
    for sequence in ("GOPR0372_07_00", "GOPR0374_11_01"):
        for frame in ("000047.png", "000048.png"):
            save(root / "GOPRO_Large" / "train" / sequence / "blur" / frame)
            save(root / "GOPRO_Large" / "train" / sequence / "sharp" / frame)
    made["gopro"] = (root / "GOPRO_Large", 4)
    return made


def test_each_published_layout_pairs_itself(tmp_path):
    made = make_replicas(tmp_path)
    for name, (root, count) in made.items():
        pairs = layout_pairs(name, root)
        assert len(pairs) == count, name
        assert {label for _, _, label in pairs} == {LAYOUTS[name].degradation}
        assert all(label in MANIFEST_DEGRADATIONS for _, _, label in pairs)
    ots = layout_pairs("reside-ots", made["reside-ots"][0])
    assert (ots[0][0].name, ots[0][1].name) == ("0001_0.8_0.2.jpg", "0001.jpg")
    assert {(d.name, c.name) for d, c, _ in layout_pairs("rain100l", made["rain100l"][0])} == \
        {(f"rain-{n:03d}.png", f"norain-{n:03d}.png") for n in (1, 2, 3)}
    gopro = layout_pairs("gopro", made["gopro"][0])
    assert all(d.parent.parent == c.parent.parent for d, c, _ in gopro)  # paired within each sequence
    # eval15 alone, as the test split
    assert len(layout_pairs("lolv1", made["lolv1"][0] / "eval15")) == 2


def test_named_layouts_report_problems_in_one_line(tmp_path):
    made = make_replicas(tmp_path)
    save(made["rain13k"][0] / "input" / "4.jpg")  # no target
    with pytest.raises(UserError, match=r"rain13k: 1 file\(s\) under .* without a partner \(input/4.jpg\)"):
        layout_pairs("rain13k", made["rain13k"][0])
    with pytest.warns(UserWarning, match="skipped"):
        assert len(layout_pairs("rain13k", made["rain13k"][0], allow_unpaired=True)) == 3
    with pytest.raises(UserError, match="root .* is not a folder"):
        layout_pairs("gopro", tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"snow100k: no pairs under .* \(expected synthetic/ \+ gt/\)"):
        layout_pairs("snow100k", made["gopro"][0])
    with pytest.raises(UserError, match="unknown; known: reside-ots"):
        layout_pairs("rain200", tmp_path)
    with pytest.raises(UserError, match="a named dataset is"):
        load_pairs([{"name": "gopro"}])


def test_restorevar_manifests_as_published(tmp_path):
    made = make_replicas(tmp_path)
    entries = [{"image_path": str(d.relative_to(tmp_path)), "target_path": str(c.relative_to(tmp_path)),
                "degradation": label, "dataset": name}
               for name in ("gopro", "lolv1") for d, c, label in layout_pairs(name, made[name][0])]
    manifest = tmp_path / "valset.json"
    manifest.write_text(json.dumps(entries))
    pairs = load_pairs([{"name": "restorevar", "root": str(manifest)}])
    assert len(pairs) == 9 and {p.degradation for p in pairs} == {"Motion blur", "Low-light"}
    manifest.write_text(json.dumps(entries + [{**entries[0], "degradation": "Fog"}]))
    with pytest.raises(UserError, match="unknown degradation\\(s\\) 'Fog'; RestoreVAR's are Haze, Rain"):
        load_pairs([{"name": "restorevar", "root": str(manifest)}])
    manifest.write_text(json.dumps(entries + [{**entries[0], "image_path": "data/missing.png"}]))
    with pytest.raises(UserError, match="1 listed file\\(s\\) missing"):
        load_pairs([{"name": "restorevar", "root": str(manifest)}])


def test_named_sources_feed_training_and_table1(tmp_path):
    """Named sources through the DataModule (as experiments/restorevar.yaml's data) and the test protocol: every
    pair lands on its Table 1 row."""
    from rvar.data import DegradationDataModule

    made = make_replicas(tmp_path)
    sources = [{"name": name, "root": str(root)} for name, (root, _) in made.items()]
    module = DegradationDataModule(train_dirs=sources, crop_size=8, batch_size=4, train_transform="restorevar",
                                   sampler="balanced")
    module.setup("fit")
    dataset = module.datasets["train"]
    assert len(dataset.entries) == sum(count for _, count in made.values())
    assert dataset.samples == math.ceil(len(dataset.entries) / 4) * 4
    assert next(iter(module.train_dataloader()))["clean"].shape == (4, 3, 8, 8)
    protocol = ProtocolDataset(sources, size=8, max_images=None)
    rows = {table1_set(label) for *_, label in protocol.items}
    assert rows == {"RESIDE", "Rain13K", "Snow100K", "LOLv1", "GoPro"}
