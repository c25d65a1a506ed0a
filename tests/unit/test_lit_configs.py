"""Every YAML in experiments/ goes through the ``rvar fit`` parser (lightning_config.yaml + the file, types
checked against the constructors); the tiny ones are also instantiated, with their checkpoint inputs swapped
for small files made here (the real ones are produced by the previous stage)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import yaml

from rvar.nn.checkpoints import save_checkpoint
from rvar.nn.prior import PriorConfig
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import TokenizerConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if p.name != "sweep.yaml")  # sweeps: test_sweep
TINY = [p for p in CONFIGS if "tiny" in p.parts]
CHECKPOINT_ARGS = ("tokenizer_ckpt", "prior_ckpt", "init_from")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def cli(args, instantiate: bool):
    from rvar.cli import RVARCLI

    class Probe(RVARCLI):
        def instantiate_classes(self):
            if instantiate:
                super().instantiate_classes()

        def _add_configure_optimizers_method_to_model(self, subcommand):
            if instantiate:
                super()._add_configure_optimizers_method_to_model(subcommand)

        def _run_subcommand(self, subcommand):
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Probe(args=args)


def test_there_are_stage_configs():
    names = {p.relative_to(ROOT / "experiments").as_posix() for p in CONFIGS}
    assert {"tokenizer.yaml", "restorevar.yaml", "refiner.yaml", "decoder.yaml", "tiny/tokenizer.yaml",
            "tiny/prior.yaml", "tiny/refiner.yaml", "tiny/decoder.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT / "experiments").as_posix())
def test_config_parses(path):
    config = cli(["fit", "--config", str(path)], instantiate=False).config.fit
    assert config.model.class_path
    if not config.model.class_path.startswith("rvar.lit.") or config.model.class_path.endswith("RestorerModule"):
        return  # a baseline's config or the evaluation-only predict.yaml: parsing and type checks are the test here
    exports = [c for c in config.trainer.callbacks if c.class_path.endswith("ExportCheckpoint")]
    assert len(exports) == 1, "each stage exports its result to a fixed path"
    assert len(config.trainer.callbacks) > 1, "callbacks+ keeps lightning_config.yaml's callbacks"


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory) -> dict:
    """A restorer file (random weights) with the tiny configs' geometry, usable as tokenizer and prior checkpoint."""
    folder = tmp_path_factory.mktemp("tiny_inputs")
    sizes = {name: yaml.safe_load((ROOT / "experiments" / "tiny" / f"{name}.yaml").read_text())["model"]["init_args"][name]
             for name in ("tokenizer", "prior")}
    restorer = Restorer(TokenizerConfig(**sizes["tokenizer"]), PriorConfig(**sizes["prior"]), None)
    return {"prior": save_checkpoint(folder / "prior.ckpt", restorer)}


@pytest.mark.parametrize("path", TINY, ids=lambda p: p.relative_to(ROOT / "experiments").as_posix())
def test_tiny_config_instantiates(path, tiny_inputs, tmp_path, rvar_data_home, monkeypatch):
    from tests.tiny_reference import save_tiny_restorer

    monkeypatch.chdir(tmp_path)  # the stage's outputs/ and any tracking files stay here
    model_args = yaml.safe_load(path.read_text())["model"]["init_args"]
    overrides = []
    for name in CHECKPOINT_ARGS:
        if model_args.get(name):
            source = save_tiny_restorer(tmp_path / "restorer.ckpt") if name == "init_from" else tiny_inputs["prior"]
            overrides.append(f"--model.init_args.{name}={source}")
    args = ["fit", "--config", str(path), *overrides, "--trainer.logger=false",
            f"--data.init_args.data_root={rvar_data_home}"]
    instance = cli(args, instantiate=True)
    assert type(instance.model).__name__ == instance.config.fit.model.class_path.rsplit(".", 1)[-1]
    if instance.config.fit.model.class_path.startswith("rvar.lit."):
        optimizer = instance.model.configure_optimizers()
        optimizers = optimizer if isinstance(optimizer, list) else [optimizer]
        assert all(len(o.param_groups[0]["params"]) > 0 for o in optimizers)
