"""``rvar sweep`` end to end: real ``rvar fit`` trials of the tiny NAFNet (two steps each) in subprocesses, a
pruned trial, a SIGTERM and the resumption, the nesting in MLflow, two processes on one SQLite study."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna", reason="rvar sweep needs the optional extra: pip install 'rvar[sweep]'")

REPO = Path(__file__).resolve().parents[2]
TINY_FIT = ["--trainer.max_steps=2", "--trainer.val_check_interval=1", "--trainer.num_sanity_val_steps=0",
            "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false", "--data.init_args.crop_size=32",
            "--data.init_args.batch_size=2", "--data.init_args.num_workers=0", "--data.init_args.samples_per_epoch=4",
            "--data.init_args.val_samples=2",
            "--model.init_args.network={width: 4, encoder_blocks: [1], middle_blocks: 1, decoder_blocks: [1]}"]
MILD = [{"name": "gaussian_noise", "options": {"sigma": [0, 0]}}]
# nearly black inputs: val/loss 0.24 after the first step, against 0.13 on MILD (threshold 0.18 between them)
DARK = [{"name": "low_light", "options": {"gain": [0.02, 0.02], "gamma": [1, 1], "noise_sigma": [0, 0]}}]


def write_sweep(folder: Path, **fields) -> Path:
    content = {"config": [str(REPO / "experiments" / "tiny" / "nafnet.yaml")], "fit_args": TINY_FIT,
               "metric": "val/loss", **fields}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def environment(data_home: Path) -> dict:
    env = {**os.environ, "RVAR_DATA_HOME": str(data_home), "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore::DeprecationWarning", "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def sweep(folder: Path, data_home: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rvar", "sweep", "space.yaml", *args], cwd=folder,
                            env=environment(data_home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def load(folder: Path, study: str):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{folder / 'optuna.db'}")


def mlflow(folder: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


@pytest.mark.slow
def test_prunes_resumes_after_sigterm_and_nests_trials(tmp_path, rvar_data_home):
    from optuna.trial import TrialState

    write_sweep(tmp_path, sampler="grid", seed=0, pruner={"name": "threshold", "upper": 0.18},
                parameters={"data.init_args.degradations": [MILD, DARK]})
    first = sweep(tmp_path, rvar_data_home, "--study", "s")
    log = tmp_path / "outputs" / "sweeps" / "s" / "trial-0000" / "fit.log"
    deadline = time.monotonic() + 300
    while not log.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
        time.sleep(0.2)
    time.sleep(1.0)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 143, out[-3000:]
    assert "rvar: terminated (SIGTERM)" in out and "Traceback" not in out
    killed, retry = load(tmp_path, "s").trials  # not left RUNNING; the same values come first on resumption
    assert (killed.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
    assert retry.user_attrs["rvar.retry_of"] == 0

    out = finish(sweep(tmp_path, rvar_data_home, "--study", "s"))  # the same command resumes the study
    trials = load(tmp_path, "s").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE]
    _, pruned, complete = trials  # the grid's other point comes after the retry
    assert pruned.params == killed.params and "low_light" in str(pruned.params)
    assert min(pruned.intermediate_values) == 1  # pruned at its first validation
    assert "gaussian_noise" in str(complete.params) and complete.value < 0.18
    assert f"best trial {complete.number}" in out.splitlines()[-1]

    client = mlflow(tmp_path)
    experiment = client.get_experiment_by_name("s")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # one sweep run, reused on resumption
    sweep_run = parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep_run]
    assert len(children) == len(runs) - 1 >= 2
    by_trial = {r.data.tags["rvar.sweep.trial"]: r for r in children}
    assert by_trial[str(pruned.number)].data.tags["rvar.sweep.state"] == "PRUNED"
    assert by_trial[str(complete.number)].data.tags["rvar.sweep.state"] == "COMPLETE"
    artifacts = {a.path for a in client.list_artifacts(sweep_run)}
    assert {"summary.json", "best_trial.yaml", "best_config.yaml", "metric_vs_trial.png"} <= artifacts
    best = yaml.safe_load(Path(client.download_artifacts(sweep_run, "best_trial.yaml", str(tmp_path))).read_text())
    assert best["trial"] == complete.number and "--data.init_args.degradations=" in best["command"]
    assert len(client.get_metric_history(sweep_run, "trial/val/loss")) == 2


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path, rvar_data_home):
    from optuna.trial import TrialState

    write_sweep(tmp_path, sampler="random", seed=0, pruner="none", trials=3,
                parameters={"model.init_args.optimizer.init_args.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
                            "data.init_args.degradations": [MILD]})
    procs = [sweep(tmp_path, rvar_data_home, "--study", "two") for _ in range(2)]
    for proc in procs:
        finish(proc)
    trials = load(tmp_path, "two").trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 3 <= len(done) <= 4 and len(done) == len(trials)  # the budget, overshot by at most one per process
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t.user_attrs["rvar.host"] for t in trials}) == 2  # both processes ran trials
    assert len({t.params["model.init_args.optimizer.init_args.lr"] for t in trials}) == len(trials)  # not one seed
    client = mlflow(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("two").experiment_id])
    parents = [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1  # one sweep run for both processes
    assert sorted(r.data.tags.get("mlflow.parentRunId") for r in runs if r.info.run_id not in parents) == \
        [parents[0]] * len(trials)
