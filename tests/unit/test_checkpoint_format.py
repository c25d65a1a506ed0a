"""The rvar checkpoint format (issue #12.3): format 2 carries one ``model`` description built by jsonargparse from
an allowlist; format-1 files (``configs``) keep loading through the same functions; a file cannot make rvar
import or call anything."""
from __future__ import annotations

import os
import sys

import pytest
import torch

from rvar.demo.runner import SHIPPED_TOKENIZER
from rvar.errors import CheckpointError
from rvar.inference import load_baseline, load_restoration_model, load_tokenizer_model
from rvar.nn.checkpoints import build_restorer, build_tokenizer, load_checkpoint, read_torch_file, save_checkpoint
from rvar.nn.prior import PriorConfig
from rvar.nn.refiner import RefinerConfig
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import VQVAE, TokenizerConfig
from rvar_plugins.baselines import LatentDiffusionRestorer, RegressionRestorer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
NAFNET = "rvar_plugins.baselines.regression.RegressionRestorer"


def save_format1(path, kind, configs, state_dict):
    """What rvar wrote before format 2 (``save_checkpoint(path, kind, configs, state_dict, meta)``)."""
    torch.save({"rvar_format": 1, "kind": kind, "configs": configs, "state_dict": dict(state_dict),
                "meta": {"source": "format 1"}}, path)
    return path


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return a.state_dict().keys() == b.state_dict().keys() and all(
        torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    torch.manual_seed(0)
    return Restorer(TokenizerConfig.tiny(), PriorConfig.tiny(), RefinerConfig.tiny()).eval()


def test_format2_round_trips_every_kind(restorer, tmp_path):
    prior_only = Restorer.from_networks(restorer.tokenizer, restorer.prior)
    for name, net, kind in (("t", restorer.tokenizer, "tokenizer"), ("p", prior_only, "prior"),
                            ("r", restorer, "restorer")):
        ckpt = load_checkpoint(save_checkpoint(tmp_path / name, net, {"m": 1}))
        assert (ckpt["rvar_format"], ckpt["kind"], ckpt["meta"], set(ckpt)) == (
            2, kind, {"m": 1}, {"rvar_format", "kind", "model", "state_dict", "meta"})
        assert same_weights(build_tokenizer(ckpt, name), restorer.tokenizer)
        if kind != "tokenizer":
            assert same_weights(build_restorer(ckpt, name), net)
    assert ckpt["model"]["class_path"] == "rvar.nn.restorer.Restorer"
    assert ckpt["model"]["init_args"]["prior"]["patch_nums"] == [1, 2, 3, 4]  # plain JSON values
    nafnet = RegressionRestorer()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "b", nafnet))
    assert ckpt["model"] == {"class_path": NAFNET, "init_args": {"network": nafnet.network.config.to_dict()}}
    assert same_weights(load_baseline(ckpt, "b"), nafnet)


def test_format1_files_keep_loading(restorer, tmp_path):
    configs = {"tokenizer": restorer.tokenizer.config.to_dict(), "prior": restorer.prior.config.to_dict(),
               "refiner": restorer.refiner.config.to_dict()}
    sd = restorer.state_dict()
    tok = save_format1(tmp_path / "t.ckpt", "tokenizer", {"tokenizer": configs["tokenizer"]},
                       {k: v for k, v in sd.items() if k.startswith("tokenizer.")})
    prior = save_format1(tmp_path / "p.ckpt", "prior", {**configs, "refiner": None},
                         {k: v for k, v in sd.items() if not k.startswith("refiner.")})
    full = save_format1(tmp_path / "r.ckpt", "restorer", configs, sd)
    for path in (tok, prior, full):
        assert same_weights(build_tokenizer(load_checkpoint(path), str(path)), restorer.tokenizer)
        assert load_tokenizer_model(str(path), torch.device("cpu")).native == 64
    assert build_restorer(load_checkpoint(prior), "p").refiner is None
    assert same_weights(build_restorer(load_checkpoint(full), "r", require_refiner=True), restorer)
    assert load_restoration_model(str(full), torch.device("cpu")).description == "RestoreVAR"
    with pytest.raises(CheckpointError, match="has no refiner"):
        build_restorer(load_checkpoint(prior), "p", require_refiner=True)
    # baselines: {"baseline": {"name", "init_args"}} plus, for the LDM, its tokenizer's config
    torch.manual_seed(0)
    ldm = LatentDiffusionRestorer(tokenizer_preset="tiny", sampling_steps=2)
    for module, extra in ((RegressionRestorer(), {}), (ldm, {"tokenizer": ldm.tokenizer.config.to_dict()})):
        path = save_format1(tmp_path / f"{module.name}.ckpt", "baseline",
                            {"baseline": {"name": module.name, "init_args": module.init_args()}, **extra},
                            module.state_dict())
        assert same_weights(load_baseline(load_checkpoint(path), str(path)), module)
        assert load_restoration_model(str(path), torch.device("cpu")).description == f"baseline {module.name}"
    assert same_weights(build_tokenizer(load_checkpoint(path), "ldm"), ldm.tokenizer)
    unknown = save_format1(tmp_path / "u.ckpt", "baseline", {"baseline": {"name": "nope", "init_args": {}}}, {})
    with pytest.raises(CheckpointError, match="baseline 'nope' is not installed"):
        load_baseline(load_checkpoint(unknown), "u.ckpt")


def test_the_shipped_tokenizer_loads():
    # retrained in format 2 (format-1 files are covered by save_format1 above)
    ckpt = load_checkpoint(SHIPPED_TOKENIZER, kinds=("tokenizer",))
    assert ckpt["rvar_format"] == 2 and ckpt["model"]["init_args"]["config"]["vocab_size"] == 256
    assert build_tokenizer(ckpt, str(SHIPPED_TOKENIZER)).config == TokenizerConfig(**ckpt["model"]["init_args"]["config"])


@pytest.mark.parametrize("model", [
    {"class_path": "os.system", "init_args": {"command": "touch {marker}"}},
    {"class_path": "this.s", "init_args": {}},  # importing `this` would print; it must not even be imported
    {"class_path": "rvar.nn.prior.RestoreVARPrior", "init_args": {}},  # importable, but not a checkpoint's network
    {"class_path": "torch.nn.Linear", "init_args": {"in_features": 1, "out_features": 1}},
    {"class_path": NAFNET, "init_args": {"optimizer": "os.system"}},  # a callable argument: never read from a file
    {"class_path": NAFNET, "init_args": {"network": {"class_path": "os.system"}}},
    {"class_path": ["os.system"], "init_args": {}},
    {"class_path": "rvar.nn.restorer.Restorer", "init_args": None},  # an rvar network, but not a baseline
    "os.system",
])
def test_a_file_cannot_name_what_rvar_builds(model, tmp_path, monkeypatch):
    marker = tmp_path / "CODE_RAN"
    calls = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args))
    if isinstance(model, dict) and "command" in (model["init_args"] or {}):
        model["init_args"]["command"] = f"touch {marker}"
    path = tmp_path / "evil.ckpt"
    torch.save({"rvar_format": 2, "kind": "baseline", "model": model, "state_dict": {}, "meta": {}}, path)
    ckpt = load_checkpoint(path)
    for load in (lambda: load_baseline(ckpt, str(path)), lambda: load_restoration_model(str(path), torch.device("cpu")),
                 lambda: build_tokenizer({**ckpt, "kind": "tokenizer"}, str(path))):
        with pytest.raises(CheckpointError) as info:
            load()
        assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert not calls and not marker.exists() and "this" not in sys.modules
    assert read_torch_file(path)["model"] == model  # plain data, read as is
