"""Issue #14.1: no checkpoint rvar reads can run code.

``evil.ckpt`` is a real ``torch.save`` file whose pickle calls ``os.system`` to create a marker file when it is
unpickled without ``weights_only``. Every place rvar loads a checkpoint gets it; each must refuse it on one line
(exit 2) and the marker must never appear. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns torch's safe default off,
so only an explicit ``weights_only=True`` in rvar (or Lightning, as rvar calls it) passes these tests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fit_runs import command, environment
from tests.tiny_reference import FIXTURES

UNSAFE = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture()
def evil(tmp_path) -> Path:
    marker = tmp_path / "CODE_RAN"
    path = tmp_path / "evil.ckpt"
    torch.save({"rvar_format": 1, "kind": "restorer", "state_dict": {}, "payload": _RunsCode(marker)}, path)
    return path


def marker_of(evil: Path) -> Path:
    return evil.parent / "CODE_RAN"


def refused(proc: subprocess.CompletedProcess, evil: Path) -> str:
    assert not marker_of(evil).exists(), "the checkpoint ran code"
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rvar: error:")]
    assert len(errors) == 1 and "could run code" in errors[0], proc.stderr[-3000:]
    return errors[0]


def rvar(*args, cwd, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **UNSAFE, **(env or {})}
    return subprocess.run([sys.executable, "-m", "rvar", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def test_inference_commands_refuse_it(evil, tmp_path, rvar_data_home):
    image = FIXTURES / "tiny_degraded_0.png"
    for args in (["restore", image, "--ckpt", evil, "-o", tmp_path / "o"],
                 ["reconstruct", image, "--ckpt", evil, "-o", tmp_path / "o"],
                 ["compare", evil, "-o", tmp_path / "cmp", "--max-images", "1", "--no-mlflow"],
                 ["import-checkpoint", "--vae", evil, "-o", tmp_path / "x.ckpt"],
                 ["import-checkpoint", "--vae", FIXTURES / "tiny_vae.pth", "--var", evil, "--patch-nums", "1,2,3,4",
                  "--heads", "2", "-o", tmp_path / "y.ckpt"]):
        proc = rvar(*args, cwd=tmp_path, env={"RVAR_DATA_HOME": str(rvar_data_home)})
        assert str(evil) in refused(proc, evil), args


def test_fit_refuses_it_as_last_and_as_a_named_file_and_never_loads_unsafely(evil, tmp_path, rvar_data_home):
    """``--ckpt_path last`` read the MLflow run id with ``weights_only=False`` before Lightning's own load."""
    checkpoints = tmp_path / "outputs" / "tiny" / "tokenizer" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(evil, checkpoints / "last.ckpt")
    env = {**environment(rvar_data_home), **UNSAFE}
    # the third: Lightning's own load is asked for weights_only=True, and rvar refuses to ask for less
    for extra in (["--ckpt_path", "last"], ["--ckpt_path", str(evil)], ["--weights_only=false"]):
        proc = subprocess.run(command(tmp_path, extra), cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)  # a fit's start-up takes minutes on a loaded 2-core machine
        refused(proc, evil)


def test_stage_configs_refuse_it(evil, monkeypatch):
    """``tokenizer_ckpt``, ``prior_ckpt`` and ``init_from``, as LightningCLI builds the stage modules."""
    from rvar.errors import CheckpointError
    from rvar.lit import PriorModule, RefinerModule, TokenizerModule

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    for build in (lambda: TokenizerModule(init_from=str(evil)), lambda: PriorModule(tokenizer_ckpt=str(evil)),
                  lambda: PriorModule(init_from=str(evil)), lambda: RefinerModule(prior_ckpt=str(evil))):
        with pytest.raises(CheckpointError, match="could run code"):
            build()
        assert not marker_of(evil).exists()


def test_a_checkpoint_without_a_run_id_warns_and_starts_a_new_run(tmp_path):
    from rvar.lit.tracking import mlflow_run_id_from_checkpoint

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, plain)
    with pytest.warns(UserWarning, match="plain.ckpt: holds no MLflow run id"):
        assert mlflow_run_id_from_checkpoint(plain) is None
    torch.save({"state_dict": {}, "mlflow_run_id": "abc123"}, plain)
    assert mlflow_run_id_from_checkpoint(plain) == "abc123"
