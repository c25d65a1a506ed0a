"""Issue #15: MLflow runs people can find (names from the config and the clock, one unit per demo) and progress
that reads outside a terminal (plain lines from `rvar fit` and from the demo's stage loop)."""
from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path

import pytest
from jsonargparse import Namespace

from fit_runs import environment, fit, mlflow_runs
from rvar.cli import name_mlflow_runs
from rvar.demo.tracking import stage_summary
from rvar.lit.progress import LineProgressBar, format_metrics, wants_line_progress
from rvar.lit.tracking import default_artifact_location, default_run_name, ensure_experiment

NAME = re.compile(r"^tokenizer-tiny-\d{8}-\d{6}$")
NOON = datetime(2026, 11, 27, 4, 12, 3)


def test_default_run_name_says_what_ran():
    assert default_run_name("experiments/tiny/prior.yaml", now=NOON) == "prior-tiny-20261127-041203"
    assert default_run_name("experiments/tokenizer.yaml", now=NOON) == "tokenizer-20261127-041203"
    assert default_run_name("experiments/tiny/prior.yaml", "test", now=NOON) == "test-prior-tiny-20261127-041203"
    assert default_run_name(None, model="rvar.lit.PriorModule", now=NOON) == "prior-20261127-041203"
    assert default_run_name("embedded-val", "compare", now=NOON) == "compare-embedded-val-20261127-041203"


def test_a_given_run_name_wins():
    def config(run_name):
        logger = Namespace(class_path="rvar.lit.tracking.RVARMLFlowLogger", init_args=Namespace(run_name=run_name))
        return Namespace(config=["experiments/tiny/prior.yaml"], trainer=Namespace(logger=[logger]),
                         model=Namespace(class_path="rvar.lit.PriorModule"))

    named, unnamed = config("mine"), config(None)
    name_mlflow_runs(named, "fit")
    name_mlflow_runs(unnamed, "fit")
    assert named.trainer.logger[0].init_args.run_name == "mine"
    assert unnamed.trainer.logger[0].init_args.run_name.startswith("prior-tiny-")


def test_artifacts_live_next_to_the_sqlite_store(tmp_path):
    assert default_artifact_location(f"sqlite:///{tmp_path}/runs/mlflow.db") == (tmp_path / "runs/mlruns").as_uri()
    assert default_artifact_location("http://tracking.example:5000") is None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    experiment = client.get_experiment(ensure_experiment(client, "demo"))
    assert experiment.artifact_location == (tmp_path / "runs/mlruns").as_uri()
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens its runs
    assert ensure_experiment(client, "demo") == experiment.experiment_id


def test_line_progress_only_where_tqdm_would_write_into_a_file():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert wants_line_progress({"callbacks": []}, [], io.StringIO())
    assert not wants_line_progress({"callbacks": []}, [], Terminal())
    assert not wants_line_progress({"enable_progress_bar": False}, [], io.StringIO())
    assert not wants_line_progress({"enable_progress_bar": True}, [], io.StringIO())
    assert not wants_line_progress({"callbacks": [LineProgressBar()]}, [], io.StringIO())


def test_metric_lines():
    assert format_metrics({"val/psnr": 12.23, "val/loss": 3.7, "train/loss": 1.0}, "val/") == \
        "val/loss 3.7, val/psnr 12.23"
    assert stage_summary({"val/psnr": 12.23, "val/loss": 3.71, "train/loss": 2.0}) == "val/psnr 12.2 dB, loss 3.71"
    assert stage_summary({"val/psnr_before": 9.0, "val/psnr_after": 11.04, "val/psnr_after/rain": 3.0,
                          "val/loss": 0.18}) == "val/psnr_after 11.0 dB, loss 0.18"  # the refiner's
    assert stage_summary({"train/loss": 2.0}) == "loss 2"
    assert stage_summary({}) == "no metrics logged"


@pytest.mark.slow
def test_two_fits_in_a_row_have_distinct_meaningful_names_and_plain_logs(tmp_path, rvar_data_home):
    folder = tmp_path / "runs"
    logs = [fit(folder, rvar_data_home, ["--trainer.max_steps=2", "--trainer.enable_progress_bar=null"], timeout=900)
            for _ in range(2)]
    names = sorted(run.info.run_name for run in mlflow_runs(folder))
    assert len(names) == 2 and names[0] != names[1], names
    assert all(NAME.match(name) for name in names), names
    for done in logs:  # stderr is a pipe here: plain lines, no carriage-return progress bar
        assert "\r" not in done.stderr and "\r" not in done.stdout
        assert "training ended at step 2" in done.stderr


@pytest.mark.slow
def test_demo_stage_outside_a_terminal_is_one_start_and_one_end_line(tmp_path, rvar_data_home, monkeypatch):
    from rvar.demo.runner import Stage, run_stage
    from rvar.demo.tracking import DemoTracking

    out = tmp_path / "quick"
    out.mkdir()
    env = {**environment(rvar_data_home), "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}"}
    tracking = DemoTracking(out, env["MLFLOW_TRACKING_URI"])
    lines = []
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal, as under nohup or CI
    result = run_stage(Stage("tokenizer", 1.0, "tokenizer.ckpt"), out, 3, env, 1, 6, lines.append, tracking)
    tracking.finish({result.name: result.seconds}, [])
    assert len(lines) == 2, lines
    assert lines[0].startswith("[1/6] tokenizer: training for about 3 s")
    assert re.fullmatch(r"\[1/6\] tokenizer: \d+ s, val/psnr \d+\.\d dB, loss [\d.]+", lines[1]), lines[1]
    log = (out / "logs" / "tokenizer.log").read_text()
    assert "\r" not in log and "validation at step" in log
    # the stage's run is nested under the demo's parent run, in the experiment named after the folder
    runs = {run.info.run_name: run for run in mlflow_runs(out)}
    parent = next(run for name, run in runs.items() if name.startswith("demo-"))
    stage = next(run for name, run in runs.items() if NAME.match(name))
    assert stage.data.tags["mlflow.parentRunId"] == parent.info.run_id and parent.info.status == "FINISHED"
    assert stage.info.experiment_id == parent.info.experiment_id
