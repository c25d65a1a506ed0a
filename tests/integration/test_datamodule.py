"""DegradationDataModule with real files, real workers and a real Lightning Trainer."""
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from rvar.data import DegradationDataModule, ensure_embedded
from rvar.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEGRADATIONS = [{"name": "rain"}, {"name": "fog"}, {"name": "gaussian_noise"}]


def _check_contract(batch, batch_size, crop):
    assert set(batch) == {"degraded", "clean", "degradation", "index"}
    for key in ("degraded", "clean"):
        assert batch[key].dtype == torch.float32 and batch[key].shape == (batch_size, 3, crop, crop)
        assert 0.0 <= float(batch[key].min()) and float(batch[key].max()) <= 1.0
    assert len(batch["degradation"]) == batch_size and all(isinstance(s, str) for s in batch["degradation"])
    assert batch["index"].dtype == torch.long and batch["index"].shape == (batch_size,)


def _batches(dm, loader):
    return [dm.on_after_batch_transfer(b, 0) for b in loader]


def test_embedded_is_idempotent(rvar_data_home):
    root = ensure_embedded()
    assert root == rvar_data_home.resolve()
    train, val = sorted((root / "train").glob("*.png")), sorted((root / "val").glob("*.png"))
    assert len(train) >= 5 and len(val) == 18  # the natural validation photos (rvar.data.embedded)
    stamp = train[0].stat().st_mtime_ns
    assert ensure_embedded() == root and train[0].stat().st_mtime_ns == stamp


def test_embedded_default_with_two_workers(rvar_data_home):
    dm = DegradationDataModule(crop_size=48, batch_size=4, num_workers=2, degradations=DEGRADATIONS,
                               samples_per_epoch=8, val_samples=4)
    dm.prepare_data()
    dm.setup("fit")
    train = _batches(dm, dm.train_dataloader())
    for batch in train:
        _check_contract(batch, 4, 48)
        assert (batch["degraded"] - batch["clean"]).abs().mean() > 1e-3
    assert sorted(torch.cat([b["index"] for b in train]).tolist()) == list(range(8))
    first, second = _batches(dm, dm.val_dataloader()), _batches(dm, dm.val_dataloader())
    for a, b in zip(first, second):
        _check_contract(a, 4, 48)
        assert torch.equal(a["degraded"], b["degraded"]) and a["degradation"] == b["degradation"]


def test_training_changes_with_epoch_and_repeats_with_seed(rvar_data_home):
    def epoch_batches(epoch, workers):
        dm = DegradationDataModule(crop_size=32, batch_size=4, num_workers=workers, degradations=DEGRADATIONS,
                                   samples_per_epoch=4, seed=5)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        batches = _batches(dm, loader)
        order = torch.cat([b["index"] for b in batches]).argsort()
        return torch.cat([b["degraded"] for b in batches])[order]

    assert torch.equal(epoch_batches(0, 0), epoch_batches(0, 2))  # workers do not change samples
    assert not torch.equal(epoch_batches(0, 0), epoch_batches(1, 0))


def _write_pairs(root: Path, names, size=40):
    rng = np.random.default_rng(1)
    for sub in ("input", "target"):
        (root / sub).mkdir(parents=True)
    for name in names:
        clean = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(clean).save(root / "target" / f"{name}.png")
        Image.fromarray(255 - clean).save(root / "input" / f"{name}.bmp")


def test_paired_folders(tmp_path):
    _write_pairs(tmp_path / "rain100l", ["a", "b", "c"])
    dm = DegradationDataModule(paired_dirs=[str(tmp_path / "rain100l")], val_dirs=[str(tmp_path / "rain100l")],
                               crop_size=32, batch_size=3)
    dm.setup("fit")
    batch = _batches(dm, dm.val_dataloader())[0]
    _check_contract(batch, 3, 32)
    assert batch["degradation"] == ["rain100l"] * 3
    assert torch.allclose(batch["degraded"], 1 - batch["clean"], atol=1e-6)  # aligned crops
    _check_contract(_batches(dm, dm.train_dataloader())[0], 3, 32)


def test_manifest_with_weighted_training_draws(tmp_path):
    _write_pairs(tmp_path / "pairs", [f"n{i}" for i in range(9)] + ["r0"])
    entries = [{"image_path": f"pairs/input/n{i}.bmp", "target_path": f"pairs/target/n{i}.png",
                "degradation": "noise", "dataset": "bsd68"} for i in range(9)]
    entries.append({"image_path": "pairs/input/r0.bmp", "target_path": "pairs/target/r0.png",
                    "degradation": "rain", "dataset": "rain100l"})
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps(entries))
    dm = DegradationDataModule(manifest=str(manifest), crop_size=32, batch_size=50, samples_per_epoch=400)
    dm.setup("fit")
    labels = [label for b in _batches(dm, dm.train_dataloader()) for label in b["degradation"]]
    assert 0.35 < labels.count("rain") / len(labels) < 0.65  # balanced although rain has 1 pair of 10


def test_unreadable_files_are_skipped_with_one_warning(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    for i in range(2):
        (folder / f"ok{i}.png").write_bytes((FIXTURES / f"tiny_clean_{i}.png").read_bytes())
    (folder / "bad1.png").write_text("nope")
    (folder / "bad2.jpg").write_bytes(b"\xff\xd8garbage")
    dm = DegradationDataModule(train_dirs=[str(folder)], val_dirs=[str(folder)], crop_size=80, batch_size=2,
                               degradations=[{"name": "jpeg"}])
    with pytest.warns(UserWarning) as record:
        dm.setup("fit")
    skipped = [w for w in record if "unreadable" in str(w.message)]
    assert len(skipped) == 2 and "bad1.png" in str(skipped[0].message) and "bad2.jpg" in str(skipped[0].message)
    with pytest.warns(UserWarning, match="upscaling"):  # 64px images, 80px crop
        _check_contract(_batches(dm, dm.val_dataloader())[0], 2, 80)


def test_missing_source_is_a_user_error(tmp_path):
    dm = DegradationDataModule(train_dirs=[str(tmp_path / "nowhere")])
    with pytest.raises(UserError, match="nowhere"):
        dm.setup("fit")


class _TinyRestorer(L.LightningModule):
    """Just enough model to drive the DataModule through a real Trainer."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.seen = []

    def _shared_step(self, batch, stage):
        assert set(batch) == {"degraded", "clean", "degradation", "index"}
        loss = torch.nn.functional.l1_loss(self.conv(batch["degraded"]), batch["clean"])
        self.log(f"{stage}/l1", loss, batch_size=len(batch["index"]))
        return loss

    def training_step(self, batch, _):
        self.seen.extend(batch["degradation"])
        return self._shared_step(batch, "train")

    def validation_step(self, batch, _):
        return self._shared_step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_real_trainer_fit(rvar_data_home, tmp_path):
    dm = DegradationDataModule(crop_size=32, batch_size=4, num_workers=2, samples_per_epoch=8, val_samples=4,
                               degradations=[{"name": "haze"}, {"name": "snow"}])
    model = _TinyRestorer()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 16 and set(model.seen) <= {"haze", "snow"}
    assert "val/l1" in trainer.callback_metrics


def test_prepare_manifest_script(tmp_path):
    import subprocess
    import sys

    _write_pairs(tmp_path / "data" / "Rain100L", ["a", "b"])
    script = Path(__file__).resolve().parents[2] / "data" / "prepare_manifest.py"
    out = tmp_path / "manifests" / "m.json"
    result = subprocess.run([sys.executable, str(script), "-o", str(out), f"{tmp_path / 'data' / 'Rain100L'}=rain"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    entries = json.loads(out.read_text())
    assert [e["degradation"] for e in entries] == ["rain", "rain"]
    assert entries[0]["image_path"].startswith("../data/Rain100L/input/")
    dm = DegradationDataModule(val_dirs=[str(out)], manifest=str(out), crop_size=32, batch_size=2)
    dm.setup("validate")
    _check_contract(_batches(dm, dm.val_dataloader())[0], 2, 32)
