"""Issue #7.1: every ``rvar fit`` leaves a complete MLflow run in ``./mlflow.db`` (params, stage/name metrics,
the config, an image grid, the best and last checkpoints, the git commit and versions) — plus the unit-level
contracts of :mod:`rvar.lit.tracking` and the non-finite loss guard."""
from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from fit_runs import STEPS, artifacts, mlflow_runs, shared_run
from rvar.lit.callbacks import AtomicModelCheckpoint, NonFiniteLossError, NonFiniteLossGuard
from rvar.lit.tracking import flatten_config, resolve_tracking_uri


@pytest.mark.slow
def test_fit_leaves_a_complete_mlflow_run(tmp_path_factory, rvar_data_home):
    folder = shared_run("reference", tmp_path_factory, rvar_data_home)
    runs = mlflow_runs(folder)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["trainer.max_steps"] == str(STEPS)
    assert params["data.init_args.batch_size"] == "2"
    assert "model.init_args.tokenizer.vocab_size" in params
    assert not [k for k in params if k.startswith("_")]
    # stage/name metrics, train per step and val (the run ends before the scheduled validation at 250)
    assert {"train/loss", "val/loss", "val/psnr"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert tags["rvar.version"] and tags["torch.version"] and tags["lightning.version"]
    assert "rvar.git_commit" in tags  # the tests run inside the rvar repository
    top = artifacts(folder, run.info.run_id)
    assert "config.yaml" in top
    assert [p for p in artifacts(folder, run.info.run_id, "images") if p.endswith(".png")]
    saved = {Path(p).name for p in artifacts(folder, run.info.run_id, "checkpoints")}
    assert "last.ckpt" in saved and any(name.startswith("best-") for name in saved)
    # artifacts live in ./mlruns next to ./mlflow.db
    assert (folder / "mlruns").is_dir()


def test_tracking_uri_defaults_to_sqlite_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri() == "http://tracking.example:5000"
    assert resolve_tracking_uri("sqlite:////abs/runs.db") == "sqlite:////abs/runs.db"
    with pytest.raises(ValueError, match="file store"):
        resolve_tracking_uri("some/folder")


def test_flatten_config():
    assert flatten_config({"trainer": {"max_steps": 4, "devices": [0, 1]}, "seed": 0}) == {
        "trainer.max_steps": "4", "trainer.devices": "[0, 1]", "seed": "0"}


class _Diverging(L.LightningModule):
    """Loss finite for two steps, then NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        return loss * float("nan") if self.global_step >= 2 else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(16, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    checkpoint = AtomicModelCheckpoint(every_n_train_steps=1, save_last=True, save_top_k=0)
    trainer = L.Trainer(accelerator="cpu", max_steps=10, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path),
                        callbacks=[checkpoint, NonFiniteLossGuard()])
    with pytest.raises(NonFiniteLossError) as caught:
        trainer.fit(_Diverging())
    message = str(caught.value)
    assert "\n" not in message and "non-finite training loss (nan) at step 3" in message
    assert str(tmp_path / "checkpoints" / "last.ckpt") in message
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert not list((tmp_path / "checkpoints").glob(".*.partial"))
