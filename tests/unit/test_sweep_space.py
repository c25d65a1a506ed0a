"""Sweep files (rvar/sweep/space.py): the example in experiments/ loads, parameters become `rvar fit` arguments,
mistakes are one line, and `rvar sweep` without Optuna says how to get it."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from rvar.cli import main
from rvar.errors import UserError
from rvar.sweep.space import cli_argument, decode_choice, grid_size, load_sweep, parse_parameter

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "experiments").rglob("sweep.yaml"))
needs_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None,
                                  reason="sweep files build Optuna pruners: pip install 'rvar[sweep]'")


def test_there_is_an_example_sweep():
    assert ROOT / "experiments" / "tiny" / "sweep.yaml" in SWEEPS


@needs_optuna
@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_example_sweeps_load(path):
    spec = load_sweep(path)
    assert all(config.is_file() for config in spec.config) and spec.parameters
    assert spec.sampler in ("tpe", "random", "grid") and spec.trials


def test_parameters_and_their_fit_arguments():
    lr = parse_parameter("model.init_args.optimizer.init_args.lr", {"low": 1e-4, "high": 1e-2, "log": True})
    assert (lr.kind, lr.log) == ("float", True)
    steps = parse_parameter("trainer.max_steps", {"low": 100, "high": 400, "step": 100})
    assert steps.kind == "int" and steps.grid() == [100, 200, 300, 400]
    choice = parse_parameter("data.init_args.degradations", [[{"name": "rain"}], [{"name": "haze"}]])
    assert choice.kind == "categorical" and decode_choice(choice.choices[1]) == [{"name": "haze"}]
    assert cli_argument("trainer.max_steps", 200) == "--trainer.max_steps=200"
    assert json.loads(cli_argument("data.init_args.degradations", [{"name": "haze"}]).split("=", 1)[1]) == \
        [{"name": "haze"}]


@pytest.mark.parametrize("spec, words", [({"low": 2, "high": 1}, "low < high"), ({"low": 0, "high": 1, "log": True},
                                         "log needs low > 0"), ([], "empty"), ({"min": 1}, "unknown field")])
def test_bad_parameters_are_one_line(spec, words):
    with pytest.raises(UserError, match=words):
        parse_parameter("trainer.max_steps", spec)


@needs_optuna
def test_bad_sweep_files_are_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("config: [experiments/tiny/nafnet.yaml]\nsampler: cma\nparameters: {trainer.max_steps: [1, 2]}\n")
    assert main(["sweep", str(path)]) == 2
    assert capsys.readouterr().err.strip() == "rvar: error: sweep: sampler 'cma'; use one of tpe, random, grid"
    path.write_text("config: [nowhere.yaml]\nparameters: {trainer.max_steps: [1, 2]}\n")
    assert main(["sweep", str(path)]) == 2
    assert "config file nowhere.yaml not found" in capsys.readouterr().err
    path.write_text("config: [experiments/tiny/nafnet.yaml]\nsampler: grid\n"
                    "parameters: {model.init_args.optimizer.init_args.lr: {low: 0.1, high: 0.2}}\n")
    with pytest.raises(UserError, match="grid sampler needs"):
        load_sweep(path)
    path.write_text("config: [experiments/tiny/nafnet.yaml]\nsampler: grid\n"
                    "parameters: {trainer.max_steps: [1, 2], seed_everything: {low: 0, high: 4, step: 2}}\n")
    assert grid_size(load_sweep(path)) == 6


def test_missing_optuna_is_one_line_with_the_extra(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    assert main(["sweep", "experiments/tiny/sweep.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "rvar: error: rvar sweep needs Optuna: pip install 'rvar[sweep]'"


def test_help_lists_the_new_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "\n  sweep " in text and "\n  app " in text and "unavailable" not in text
