"""The sweep file of ``rvar sweep``: which ``rvar fit`` to run, the search space, the metric, sampler and pruner.

A sweep file is YAML (read with ``yaml.safe_load``)::

    config: [experiments/tiny/nafnet.yaml]      # the `rvar fit --config` files, in order
    fit_args: [--trainer.max_steps=200]         # more `rvar fit` arguments, the same for every trial
    metric: val/loss                            # a metric the trial logs at validation; pruning reads it too
    direction: minimize                         # or maximize
    sampler: tpe                                # tpe (default), random or grid
    pruner: {name: median, n_startup_trials: 2} # median, percentile, threshold, hyperband or none
    trials: 8                                   # budget: finished trials in the study (a killed one is retried)
    timeout: null                               # budget: seconds after which no new trial starts
    parameters:                                 # any `rvar fit` key (what `--key=value` would set)
      model.init_args.optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      model.init_args.network.init_args.width: [4, 8, 16]      # a list: a categorical choice
      trainer.max_steps: {type: int, low: 100, high: 400, step: 100}

A parameter is a list (categorical: any YAML values, lists and mappings included) or a mapping with ``low``,
``high`` and optionally ``type`` (``float`` unless both bounds are integers), ``log`` and ``step``. The grid
sampler needs finite values: a list, or ``int`` / ``float`` bounds with a ``step``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence


from rvar.errors import UserError

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "percentile", "threshold", "hyperband", "none")
DIRECTIONS = ("minimize", "maximize")
KEYS = ("config", "fit_args", "metric", "direction", "sampler", "pruner", "trials", "timeout", "seed", "parameters")


@dataclass(frozen=True)
class Parameter:
    """One searched config value: ``key`` is the dotted ``rvar fit`` key, ``kind`` float, int or categorical."""

    key: str
    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value (what ``rvar fit`` gets): drawn by the sampler, or fixed by an enqueued trial."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return decode_choice(trial.suggest_categorical(self.key, list(self.choices)))

    def grid(self) -> List[Any]:
        """The finite values the grid sampler walks (categorical choices as Optuna stores them)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None:
            raise UserError(f"sweep: parameter {self.key}: the grid sampler needs a list of values or a step")
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(map(str, self.choices))
        scale = ", log" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{self.kind} in [{self.low:g}, {self.high:g}{scale}]"


def encode_choice(value: Any) -> Any:
    """Optuna keeps None, bool, int, float and str; a list or mapping is kept as its JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return "json:" + json.dumps(value, sort_keys=True)


def decode_choice(value: Any) -> Any:
    return json.loads(value[5:]) if isinstance(value, str) and value.startswith("json:") else value


def cli_argument(key: str, value: Any) -> str:
    """``--key=value`` as ``rvar fit`` parses it (jsonargparse reads values as YAML; JSON is YAML)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"--{key}={text}"


def parse_parameter(key: str, spec: Any) -> Parameter:
    if not isinstance(key, str) or not key or key.startswith("-") or " " in key:
        raise UserError(f"sweep: parameter {key!r}: write the dotted `rvar fit` key without dashes, "
                        f"e.g. model.init_args.optimizer.init_args.lr")
    if isinstance(spec, list):
        if not spec:
            raise UserError(f"sweep: parameter {key}: the list of values is empty")
        return Parameter(key, "categorical", choices=tuple(encode_choice(v) for v in spec))
    if not isinstance(spec, Mapping):
        raise UserError(f"sweep: parameter {key}: give a list of values or a mapping with low and high")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
    if unknown:
        raise UserError(f"sweep: parameter {key}: unknown field(s) {', '.join(sorted(unknown))}; "
                        f"use type, low, high, log, step or choices")
    if "choices" in spec:
        return parse_parameter(key, list(spec["choices"] or []))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
        raise UserError(f"sweep: parameter {key}: needs numbers low < high (got low={low!r}, high={high!r})")
    integral = all(isinstance(v, int) for v in (low, high))
    kind = spec.get("type", "int" if integral else "float")
    if kind not in ("int", "float"):
        raise UserError(f"sweep: parameter {key}: type {kind!r}; use int, float, or a list for choices")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and (low <= 0 or step is not None):
        raise UserError(f"sweep: parameter {key}: log needs low > 0 and no step")
    return Parameter(key, kind, float(low), float(high), log, None if step is None else float(step))


@dataclass
class SweepSpec:
    """A parsed sweep file; paths in ``config`` are resolved against the working directory, else the file's folder,
    else rvar's own configs (so ``experiments/tiny/nafnet.yaml`` works from anywhere)."""

    path: Path
    config: List[Path]
    parameters: List[Parameter]
    metric: str = "val/loss"
    direction: str = "minimize"
    sampler: str = "tpe"
    pruner: Dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    trials: Optional[int] = None
    timeout: Optional[float] = None
    seed: Optional[int] = None
    fit_args: List[str] = field(default_factory=list)


def _resolve_config(value: Any, sweep_file: Path) -> Path:
    from rvar import configs

    for candidate in (Path(str(value)).expanduser(), sweep_file.parent / str(value), configs.root() / str(value)):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"{sweep_file}: config file {value} not found (looked in the working directory, "
                    f"next to the sweep file and among rvar's configs)")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file (see the module docstring); every problem is a one-line UserError."""
    from rvar.files import read_yaml

    path = Path(path)
    raw = read_yaml(path, "sweep file")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a sweep file is a YAML mapping with config, metric and parameters")
    unknown = set(raw) - set(KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(KEYS)}")
    configs = raw.get("config") or []
    configs = [configs] if isinstance(configs, str) else list(configs)
    if not configs:
        raise UserError(f"{path}: give the `rvar fit` config(s) to sweep as `config: [FILE, ...]`")
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict) or not parameters:
        raise UserError(f"{path}: `parameters` must map at least one rvar fit key to its values")
    fit_args = raw.get("fit_args") or []
    if not isinstance(fit_args, list) or not all(isinstance(a, str) and a.startswith("--") for a in fit_args):
        raise UserError(f"{path}: `fit_args` is a list of `rvar fit` options such as --trainer.max_steps=100")
    pruner = raw.get("pruner") or {"name": "median"}
    pruner = {"name": pruner} if isinstance(pruner, str) else dict(pruner)
    spec = SweepSpec(path=path.resolve(), config=[_resolve_config(c, path) for c in configs],
                     parameters=[parse_parameter(k, v) for k, v in parameters.items()],
                     metric=str(raw.get("metric", "val/loss")), direction=str(raw.get("direction", "minimize")),
                     sampler=str(raw.get("sampler", "tpe")), pruner=pruner, trials=raw.get("trials"),
                     timeout=raw.get("timeout"), seed=raw.get("seed"), fit_args=list(fit_args))
    check(spec)
    return spec


def check(spec: SweepSpec) -> None:
    """The choices that do not depend on parsing: direction, sampler, pruner, budgets."""
    if spec.direction not in DIRECTIONS:
        raise UserError(f"sweep: direction {spec.direction!r}; use minimize or maximize")
    if spec.sampler not in SAMPLERS:
        raise UserError(f"sweep: sampler {spec.sampler!r}; use one of {', '.join(SAMPLERS)}")
    make_pruner(spec.pruner)
    for name in ("trials", "timeout"):
        value = getattr(spec, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise UserError(f"sweep: {name} must be a positive number (got {value!r})")
    if spec.sampler == "grid":
        for parameter in spec.parameters:
            parameter.grid()


def make_pruner(options: Mapping[str, Any]):
    """An Optuna pruner from ``{name: ..., **its arguments}`` (the sweep and each trial build the same one)."""
    import optuna

    options = dict(options)
    name = options.pop("name", "median")
    classes = {"median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
               "threshold": optuna.pruners.ThresholdPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "none": optuna.pruners.NopPruner}
    if name not in classes:
        raise UserError(f"sweep: pruner {name!r}; use one of {', '.join(PRUNERS)}")
    try:
        return classes[name](**options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"sweep: pruner {name}: bad options {options}: {exc}") from None


def make_sampler(spec: SweepSpec):
    import optuna

    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: p.grid() for p in spec.parameters}, seed=spec.seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


def grid_size(spec: SweepSpec) -> Optional[int]:
    """The number of grid points (the grid sampler's natural budget), None for the other samplers."""
    if spec.sampler != "grid":
        return None
    return math.prod(len(p.grid()) for p in spec.parameters)


def trial_arguments(parameters: Sequence[Parameter], values: Mapping[str, Any]) -> List[str]:
    return [cli_argument(p.key, values[p.key]) for p in parameters]
