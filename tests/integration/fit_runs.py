"""Real ``rvar fit`` runs of ``experiments/tiny/tokenizer.yaml``, shrunk to CPU size, shared by the tracking,
resume and DDP tests (each distinct run happens once per test session)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "tiny" / "tokenizer.yaml"
STEPS = 6
# 3 batches of 2 per epoch: 6 steps cross an epoch boundary; a checkpoint every step; tiny validation
SHRINK = [f"--trainer.max_steps={STEPS}", "--trainer.num_sanity_val_steps=0", "--trainer.log_every_n_steps=1",
          "--trainer.enable_progress_bar=false", "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
          "--data.init_args.samples_per_epoch=6", "--data.init_args.val_samples=2"]
EVERY_STEP = """trainer:
  callbacks:
    - class_path: rvar.lit.callbacks.AtomicModelCheckpoint
      init_args: {every_n_train_steps: 1, save_last: true, save_top_k: 0}
    - class_path: rvar.lit.callbacks.AtomicModelCheckpoint
      init_args: {monitor: val/loss, save_top_k: 1, save_last: false, filename: "best-{step}"}
    - rvar.lit.callbacks.ResumableDataPosition
    - rvar.lit.callbacks.NonFiniteLossGuard
    - rvar.lit.callbacks.ValidateAtEnd
    - rvar.lit.callbacks.ArtifactCheckpoints
"""
_RUNS: Dict[str, Path] = {}


def environment(data_home: Path) -> Dict[str, str]:
    env = {**os.environ, "RVAR_DATA_HOME": str(data_home), "NO_ALBUMENTATIONS_UPDATE": "1",
           "PYTHONWARNINGS": "ignore::DeprecationWarning", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def command(folder: Path, extra: Sequence[str] = ()) -> List[str]:
    (folder / "every_step.yaml").write_text(EVERY_STEP)
    return [sys.executable, "-m", "rvar", "fit", "--config", str(CONFIG), "--config", "every_step.yaml",
            *SHRINK, *extra]


def fit(folder: Path, data_home: Path, extra: Sequence[str] = (), timeout: int = 400) -> subprocess.CompletedProcess:
    """Run ``rvar fit`` in ``folder`` (created); fails the test with the output's tail on a non-zero exit."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command(folder, extra), cwd=folder, env=environment(data_home), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"rvar fit failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def shared_run(name: str, tmp_path_factory, data_home: Path, extra: Sequence[str] = (), timeout: int = 400) -> Path:
    """The folder of a run made once per session (``name`` identifies it)."""
    if name not in _RUNS:
        folder = tmp_path_factory.mktemp(name)
        fit(folder, data_home, extra, timeout)
        _RUNS[name] = folder
    return _RUNS[name]


def start(folder: Path, data_home: Path, extra: Sequence[str] = ()) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "first_attempt.log", "w")
    return subprocess.Popen(command(folder, extra), cwd=folder, env=environment(data_home), stdout=log,
                            stderr=subprocess.STDOUT)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before writing {path}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.2)


def last_checkpoint(folder: Path) -> dict:
    return torch.load(folder / "outputs/tiny/tokenizer/checkpoints/last.ckpt", map_location="cpu",
                      weights_only=False)


def max_weight_difference(a: dict, b: dict) -> float:
    """Largest |a - b| over the floating-point parameters of two Lightning checkpoints."""
    first, second = a["state_dict"], b["state_dict"]
    assert first.keys() == second.keys()
    return max(float((first[k].float() - second[k].float()).abs().max()) for k in first
               if first[k].is_floating_point())


def mlflow_runs(folder: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    return [run for experiment in client.search_experiments()
            for run in client.search_runs([experiment.experiment_id])]


def client(folder: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def artifacts(folder: Path, run_id: str, path: Optional[str] = None) -> List[str]:
    return [item.path for item in client(folder).list_artifacts(run_id, path)]
