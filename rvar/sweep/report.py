"""What a sweep leaves on its MLflow run: the best trial, its config, the metric against trials, the importances.

Files (written to the sweep's output folder, then logged as artifacts of the sweep run):

* ``summary.json``: the study, the count of trials per state, every trial (number, state, value, parameters)
  and the best trial;
* ``best_trial.yaml``: the best trial's parameters and the ``rvar fit`` command that reproduces it;
* ``best_config.yaml``: the best trial's full resolved config (its run's ``config.yaml`` artifact);
* ``metric_vs_trial.png``: each trial's last reported value (complete and pruned apart) and the best so far;
* ``param_importances.png`` / ``.json``: Optuna's fANOVA importances (from two complete trials on).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

from rvar.sweep.space import SweepSpec, decode_choice


def trial_rows(study) -> List[Dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = trial.intermediate_values
        value = trial.value if trial.value is not None else (steps[max(steps)] if steps else None)
        rows.append({"number": trial.number, "state": trial.state.name, "value": value,
                     "params": {k: decode_choice(v) for k, v in trial.params.items()},
                     "steps_reported": len(steps)})
    return rows


def write_summary(study, spec: SweepSpec, out: Path, client: Any,
                  trial_run: Callable[[int], Optional[str]]) -> List[Path]:
    """Write the files of the module docstring into ``out``; returns those written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    states: Dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    best = next((r for r in rows if r["state"] == "COMPLETE" and study.best_trial.number == r["number"]), None) \
        if any(r["state"] == "COMPLETE" for r in rows) else None
    summary = {"study": study.study_name, "metric": spec.metric, "direction": spec.direction, "states": states,
               "best_trial": best, "trials": rows}
    files = [out / "summary.json"]
    files[0].write_text(json.dumps(summary, indent=1, default=str))
    if best is not None:
        files += _best_files(best, spec, out, client, trial_run(best["number"]))
    files.append(plot_metric(rows, spec, out / "metric_vs_trial.png"))
    files += importances(study, out)
    return files


def _best_files(best: Dict[str, Any], spec: SweepSpec, out: Path, client: Any, run_id: Optional[str]) -> List[Path]:
    from rvar.sweep.space import trial_arguments

    command = ["rvar", "fit", *[a for c in spec.config for a in ("--config", str(c))], *spec.fit_args,
               *trial_arguments(spec.parameters, best["params"])]
    record = {"trial": best["number"], spec.metric: best["value"], "params": best["params"],
              "mlflow_run_id": run_id, "command": " ".join(command)}
    path = out / "best_trial.yaml"
    path.write_text(yaml.safe_dump(record, sort_keys=False, width=1000))
    files = [path]
    if run_id is not None:
        with tempfile.TemporaryDirectory() as folder:
            try:
                local = client.download_artifacts(run_id, "config.yaml", folder)
            except Exception:  # noqa: BLE001 - a run without its config (killed before it was saved)
                local = None
            if local is not None:
                files.append(Path(shutil.copy(local, out / "best_config.yaml")))
    return files


def plot_metric(rows: List[Dict[str, Any]], spec: SweepSpec, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for state, marker, colour in (("COMPLETE", "o", "tab:blue"), ("PRUNED", "x", "tab:red")):
        points = [(r["number"], r["value"]) for r in rows if r["state"] == state and r["value"] is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=colour, label=state.lower(), zorder=3)
    complete = sorted((r["number"], r["value"]) for r in rows if r["state"] == "COMPLETE" and r["value"] is not None)
    if complete:
        better = min if spec.direction == "minimize" else max
        best_so_far, current = [], None
        for _, value in complete:
            current = value if current is None else better(current, value)
            best_so_far.append(current)
        ax.step([n for n, _ in complete], best_so_far, where="post", color="tab:green", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(spec.metric)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def importances(study, out: Path) -> List[Path]:
    """fANOVA importances of the parameters (none before two complete trials with differing values)."""
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return []
    try:
        values = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. every complete trial had the same parameters
        return []
    if not values:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    json_path, png_path = out / "param_importances.json", out / "param_importances.png"
    json_path.write_text(json.dumps(values, indent=1))
    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(names)), dpi=100)
    ax.barh([n.replace("init_args.", "") for n in names], [values[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA)")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return [json_path, png_path]
