"""How ``rvar demo`` shows itself: one MLflow unit per demo, and progress that reads in a terminal and in a log.

* :class:`DemoTracking`: the experiment is named after the demo's folder (``outputs/demo`` -> ``demo``); a
  parent run ``demo-<time>`` holds every stage run and the comparison as nested runs (MLflow's
  ``mlflow.parentRunId`` tag) and ends with the report as its artifact.
* :func:`follow_stage`: while a stage's ``rvar fit`` runs, a live tqdm bar in a terminal with the stage's latest
  validation metrics (read from its MLflow run); elsewhere (``rvar demo > demo.log``, CI, SLURM) nothing until
  the stage ends, when :func:`stage_summary` gives one plain line: ``prior: 191 s, val/psnr 12.2 dB, loss 3.7``.
"""
from __future__ import annotations

import atexit
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under its parent
STAGE_TAG = "rvar.demo.stage"


def stage_summary(metrics: Mapping[str, float]) -> str:
    """``"val/psnr 12.2 dB, loss 3.7"`` from a run's latest metrics (validation preferred, else training)."""
    parts = []
    overall = sorted(n for n in metrics if n.startswith("val/") and n.count("/") == 1)  # not per degradation
    psnr = [n for n in ("val/psnr", "val/psnr_after") if n in metrics] + [n for n in overall if "psnr" in n]
    other = [n for n in ("val/accuracy", "val/ssim") if n in metrics]
    if psnr:
        parts.append(f"{psnr[0]} {metrics[psnr[0]]:.1f} dB")
    elif other:
        parts.append(f"{other[0]} {metrics[other[0]]:.3g}")
    loss = metrics.get("val/loss", metrics.get("train/loss"))
    if loss is not None:
        parts.append(f"loss {loss:.3g}")
    return ", ".join(parts) or "no metrics logged"


class DemoTracking:
    """The demo's parent run in the store ``tracking_uri`` (the one its stages use).

    Args:
        out: the demo's folder; its name is the MLflow experiment.
        tracking_uri: the store; None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
    """

    def __init__(self, out: Path, tracking_uri: Optional[str] = None) -> None:
        from mlflow.tracking import MlflowClient

        from rvar.lit.tracking import ensure_experiment, resolve_tracking_uri, run_tags

        self.client = MlflowClient(resolve_tracking_uri(tracking_uri))
        self.out, self.experiment = str(out), out.name or "demo"
        self.experiment_id = ensure_experiment(self.client, self.experiment)
        name = f"demo-{datetime.now():%Y%m%d-%H%M%S}"
        tags = {**run_tags(), "rvar.demo": self.out}
        self.run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        self.finished = False
        # a demo that stops on an error or Ctrl-C leaves its parent run FAILED / KILLED, not RUNNING
        atexit.register(self._close_unfinished)

    # 1. the runs under it ------------------------------------------------------------------------------------
    def stage_arguments(self, stage: str, run_name: str) -> List[str]:
        """``rvar fit`` arguments that put a stage's run into the demo's experiment, under its parent run."""
        tags = {PARENT_TAG: self.run_id, STAGE_TAG: stage, "rvar.demo": self.out}
        prefix = "--trainer.logger.init_args."
        return [f"{prefix}experiment_name={self.experiment}", f"{prefix}run_name={run_name}",
                f"{prefix}tags={json.dumps(tags)}"]

    def compare_arguments(self) -> List[str]:
        return ["--experiment", self.experiment, "--tag", f"{PARENT_TAG}={self.run_id}",
                "--tag", f"{STAGE_TAG}=compare"]

    def find_run(self, run_name: str) -> Optional[str]:
        """The id of this demo's stage run called ``run_name``, once ``rvar fit`` has created it."""
        runs = self.client.search_runs([self.experiment_id], max_results=1,
                                       filter_string=f"attributes.run_name = '{run_name}' and "
                                                     f"tags.`{PARENT_TAG}` = '{self.run_id}'")
        return runs[0].info.run_id if runs else None

    def metrics(self, run_id: Optional[str]) -> Dict[str, float]:
        """The latest value of every metric of ``run_id`` ({} when there is no run yet)."""
        if not run_id:
            return {}
        try:
            return dict(self.client.get_run(run_id).data.metrics)
        except Exception:  # noqa: BLE001 - progress display only: a locked SQLite file waits for the next poll
            return {}

    # 2. the end ------------------------------------------------------------------------------------------------
    def finish(self, stage_seconds: Mapping[str, float], files: Sequence[Path]) -> None:
        """Log each stage's seconds and the report files to the parent run, and end it FINISHED."""
        for name, seconds in stage_seconds.items():
            self.client.log_metric(self.run_id, f"stage/{name}/seconds", float(seconds))
        for path in files:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def _close_unfinished(self) -> None:
        if not self.finished:
            status = "KILLED" if isinstance(sys.exc_info()[1], KeyboardInterrupt) else "FAILED"
            try:
                self.client.set_terminated(self.run_id, status)
            except Exception:  # noqa: BLE001 - the interpreter is exiting; nothing more to do
                pass
            self.finished = True


def follow_stage(proc: subprocess.Popen, label: str, seconds: int, metrics: Callable[[], Dict[str, float]],
                 interactive: bool, poll_seconds: float = 5.0) -> None:
    """Wait for ``proc``; in a terminal (``interactive``) draw a bar over the stage's time budget with its latest
    validation metrics, refreshed every ``poll_seconds``."""
    if not interactive:
        proc.wait()
        return
    from tqdm import tqdm

    start = last_poll = time.perf_counter()
    bar = tqdm(total=seconds, desc=label, unit="s", file=sys.stderr, leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}")
    while proc.poll() is None:
        time.sleep(1.0)
        now = time.perf_counter()
        bar.n = min(now - start, seconds)
        if now - last_poll >= poll_seconds:
            last_poll = now
            latest = metrics()
            if any(name.startswith("val/") for name in latest):
                bar.set_postfix_str(stage_summary(latest), refresh=False)
        bar.refresh()
    bar.close()
