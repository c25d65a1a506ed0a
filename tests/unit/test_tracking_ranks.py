"""Issue #13.5: only global rank 0 opens an MLflow store. Lightning's ``MLFlowLogger`` builds an ``MlflowClient`` on
every rank, and for a ``sqlite:///`` URI that creates the database file: an empty ``mlflow.db`` on every node."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.utilities import rank_zero_only

from rvar.lit.tracking import RVARMLFlowLogger, is_global_rank_zero

ROOT = Path(__file__).resolve().parents[2]


def _log_everything(logger: RVARMLFlowLogger, folder: Path) -> None:
    note = folder / "note.txt"
    note.write_text("hello")
    logger.log_hyperparams({"trainer": {"max_steps": 4}})
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.experiment.log_artifact(logger.run_id, str(note))  # as rvar's callbacks upload files
    logger.finalize("success")


@pytest.mark.parametrize("environment", [{"rank": 1}, {"NODE_RANK": "1"}])
def test_a_non_zero_rank_creates_no_mlflow_store(tmp_path, monkeypatch, environment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rank_zero_only, "rank", environment.get("rank", 0))
    if "NODE_RANK" in environment:
        monkeypatch.setenv("NODE_RANK", environment["NODE_RANK"])
    assert not is_global_rank_zero()
    database = tmp_path / "store" / "runs.db"
    database.parent.mkdir()
    logger = RVARMLFlowLogger(tracking_uri=f"sqlite:///{database}")
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # what the Trainer sets from the process group, before logging
    _log_everything(logger, tmp_path)
    logger.experiment.log_param("anything")  # Lightning's dummy experiment swallows any call
    assert logger.run_id is None and logger.experiment_id is None
    assert list(database.parent.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt", "store"]  # no mlflow.db, mlruns/, ...


def test_rank_zero_still_logs_and_a_late_rank_zero_opens_the_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("NODE_RANK", "1")
    logger = RVARMLFlowLogger(tracking_uri=uri)  # the environment said "another node" when it was built
    assert not (tmp_path / "runs.db").exists()
    monkeypatch.delenv("NODE_RANK")
    for logger in (logger, RVARMLFlowLogger(tracking_uri=uri, experiment_name="other")):
        _log_everything(logger, tmp_path)
        run = MlflowClient(uri).get_run(logger.run_id)
        assert run.info.status == "FINISHED" and run.data.metrics == {"train/loss": 1.0}
        assert run.data.params == {"trainer/max_steps": "4"}


def test_torchrun_rank_from_the_environment(tmp_path):
    """The real path: ``RANK=1`` set by the launcher before Python starts (Lightning reads it at import)."""
    code = ("from rvar.lit.tracking import RVARMLFlowLogger as L; l = L(tracking_uri='sqlite:///runs.db'); "
            "l.log_metrics({'a': 1.0}); l.finalize('success'); print(l.run_id)")
    env = {**os.environ, "RANK": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "None"
    assert list(tmp_path.iterdir()) == []
