"""Each shim of rvar.lit.lightning_compat against the installed Lightning: an upgrade that breaks one fails here."""
from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from rvar.lit import lightning_compat as compat
from rvar.lit.callbacks import AtomicModelCheckpoint


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        return self.layer(batch).square().mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(8, 2), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Restart(Callback):
    """Calls restart_train_iterator where ResumableDataPosition does and counts the batches then trained."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_start(self, trainer, pl_module) -> None:
        compat.restart_train_iterator(trainer)

    def on_train_batch_end(self, *args) -> None:
        self.batches += 1


def test_private_model_checkpoint_hooks_exist_with_their_signatures():
    for name in ("_save_checkpoint", "_find_last_checkpoints"):
        params = list(inspect.signature(getattr(ModelCheckpoint, name)).parameters)
        assert params[:2] == ["self", "trainer"], name
    fresh = ModelCheckpoint()
    assert hasattr(fresh, "_last_global_step_saved") and hasattr(fresh, "_last_checkpoint_saved")


def test_checkpoint_hooks_data_iterator_and_last_checkpoints(tmp_path):
    written = []

    class Recording(AtomicModelCheckpoint):
        def write_checkpoint(self, trainer, filepath):
            written.append(Path(filepath).name)
            super().write_checkpoint(trainer, filepath)

    checkpoint, restart = Recording(every_n_train_steps=2, save_top_k=0), _Restart()
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[checkpoint, restart])
    trainer.fit(_Tiny())
    assert restart.batches == 4  # the restarted iterator still yields the epoch's batches
    assert "last.ckpt" in written and checkpoint._last_global_step_saved == 4
    assert Path(checkpoint._last_checkpoint_saved).is_file() and checkpoint.last_model_path
    assert not list(Path(checkpoint.dirpath).glob(".*.partial"))
    found = compat.last_checkpoints(checkpoint, trainer)
    assert {Path(p).name for p in found} == {"last.ckpt"}
    plain = ModelCheckpoint(dirpath=checkpoint.dirpath)
    assert compat.last_checkpoints(plain, trainer) == found


def test_mlflow_run_shims(tmp_path):
    logger = MLFlowLogger(experiment_name="compat", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not compat.mlflow_run_started(logger) and compat.mlflow_pending_run_id(logger) is None
    run_id = logger.run_id  # starts a run
    assert compat.mlflow_run_started(logger) and compat.mlflow_pending_run_id(logger) == run_id
    again = MLFlowLogger(experiment_name="compat", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    compat.set_mlflow_run_id(again, run_id)
    assert not compat.mlflow_run_started(again) and again.run_id == run_id and compat.mlflow_run_started(again)


def test_mlflow_logger_without_client_opens_no_store_until_asked(tmp_path):
    db = tmp_path / "mlflow.db"
    with compat.mlflow_logger_without_client():
        logger = MLFlowLogger(experiment_name="compat", tracking_uri=f"sqlite:///{db}")
    assert not db.exists()  # Lightning's __init__ would have created it through MlflowClient
    import mlflow.tracking
    assert isinstance(mlflow.tracking.MlflowClient, type)  # the real class is back after the block
    compat.ensure_mlflow_client(logger)
    assert logger.run_id and db.exists()


def test_resumable_data_position_uses_the_public_train_dataloader(tmp_path):
    """ResumableDataPosition reads trainer.train_dataloader (public) instead of fit_loop._combined_loader."""
    from rvar.lit.callbacks import ResumableDataPosition

    position, counter = ResumableDataPosition(), _Restart()
    position._pending = {"epoch": 0, "batches": 3}  # as on_load_checkpoint leaves it: 3 of 4 batches done
    counter.on_train_start = lambda trainer, module: None
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[position, counter])
    trainer.fit(_Tiny())
    assert counter.batches == 1
