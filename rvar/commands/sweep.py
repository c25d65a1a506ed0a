"""``rvar sweep``: an Optuna study over ``rvar fit`` config values, each trial a real fit, tracked in MLflow."""
from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

from rvar.errors import UserError

HELP = "search config values with Optuna: each trial an rvar fit, pruned early, nested in MLflow"
DESCRIPTION = """Run an Optuna study over the values a sweep file names (any `rvar fit` key: --model..., --data...,
--trainer...). Each trial is a real `rvar fit` of the sweep's configs in its own process, with its folder in
OUT/trial-NNNN; weak trials are pruned from the validation metric they log. The study is kept in an Optuna
storage (default: optuna.db beside the MLflow store), so the same command resumes it, and several processes or
machines can run it at once. Every trial's MLflow run is nested under one sweep run, which gets the best trial,
its config, the metric against trials and the parameter importances. Ctrl-C / SIGTERM stops the running trial
cleanly (it is run again on resumption). The sweep file format: rvar/sweep/space.py, or README "Sweeps".
Needs Optuna: pip install 'rvar[sweep]'.

examples:
  rvar sweep experiments/tiny/sweep.yaml                       # TPE, the file's budget
  rvar sweep experiments/tiny/sweep.yaml --trials 20 --timeout 3600 --sampler random
  rvar sweep experiments/tiny/sweep.yaml --storage postgresql://host/optuna   # several machines
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", help="sweep YAML: config, metric, parameters (see rvar/sweep/space.py)")
    parser.add_argument("--trials", type=int, default=None,
                        help="stop when the study holds this many finished (complete or pruned) trials")
    parser.add_argument("--timeout", type=float, default=None, help="start no trial after this many seconds")
    parser.add_argument("--sampler", choices=("tpe", "random", "grid"), default=None,
                        help="override the sweep file's sampler (default there: tpe)")
    parser.add_argument("--seed", type=int, default=None, help="sampler seed")
    parser.add_argument("--study", default=None, help="study name (default: from the sweep file, e.g. sweep-tiny)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL (default: sqlite optuna.db beside a SQLite MLflow store)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: the study name)")
    parser.add_argument("--output", "-o", default=None, help="trial folders (default: outputs/sweeps/STUDY)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="fit_args",
                        help="one more rvar fit value for every trial (repeatable), e.g. --set trainer.max_steps=50")


def require_optuna() -> None:
    if importlib.util.find_spec("optuna") is None:
        raise UserError("rvar sweep needs Optuna: pip install 'rvar[sweep]'")


def default_study_name(sweep_file: Path) -> str:
    """``experiments/tiny/sweep.yaml`` -> ``sweep-tiny``: stable, so running the command again resumes."""
    parts = [sweep_file.stem] + ([sweep_file.parent.name] if sweep_file.parent.name not in ("", ".", "experiments")
                                 else [])
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)


def run(args: argparse.Namespace) -> int:
    require_optuna()
    from rvar.lit.tracking import resolve_tracking_uri
    from rvar.sweep.runner import Sweep, SweepOptions, default_storage
    from rvar.sweep.space import check, load_sweep

    spec = load_sweep(args.sweep_file)
    if args.sampler:
        spec.sampler = args.sampler
    if args.seed is not None:
        spec.seed = args.seed
    check(spec)
    if any("=" not in a or a.startswith("-") for a in args.fit_args):
        raise UserError("rvar sweep: write --set KEY=VALUE with a dotted rvar fit key, e.g. --set trainer.max_steps=50")
    extra = [f"--{a}" for a in args.fit_args]
    for name in ("trials", "timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"rvar sweep: --{name} must be positive")
    try:
        tracking_uri = resolve_tracking_uri(args.tracking_uri)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    study = args.study or default_study_name(Path(args.sweep_file))
    options = SweepOptions(study_name=study, storage=args.storage or default_storage(tracking_uri),
                           tracking_uri=tracking_uri, experiment=args.experiment or study,
                           out=Path(args.output or Path("outputs") / "sweeps" / study).resolve(),
                           trials=args.trials, timeout=args.timeout, extra_fit_args=tuple(extra))
    sweep = Sweep(spec, options)
    sweep.run()
    best = sweep.best_line()
    print(best)
    return 0
