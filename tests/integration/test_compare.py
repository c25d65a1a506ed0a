"""``rvar compare`` end to end on small checkpoints made here: the tiny reference restorer (tests/fixtures weights),
a freshly initialised tiny LDM and a tiny NAFNet; files, CSV rows and an MLflow run with the artifacts."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from rvar.cli import main
from rvar.nn.checkpoints import load_strict, save_checkpoint
from rvar.nn.prior import PriorConfig
from rvar.nn.refiner import RefinerConfig
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import TokenizerConfig
from rvar_plugins.baselines.ldm import LatentDiffusionRestorer
from rvar_plugins.baselines.regression import RegressionRestorer

FIXTURES = Path(__file__).parents[1] / "fixtures"
REBUILT = {"lvl_1L", "attn_bias_for_masking", "lvl_1L_cond", "freqs_cis", "freqs_cis_cross"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    reference = torch.load(FIXTURES / "tiny_restorevar.pth", map_location="cpu", weights_only=True)
    prior_sd = {k: v for k, v in reference.items() if k not in REBUILT and not k.endswith("zero_k_bias")
                and not k.startswith("vae_refiner.")}
    refiner_sd = {k[len("vae_refiner."):]: v for k, v in reference.items() if k.startswith("vae_refiner.")}
    restorer = Restorer(TokenizerConfig.tiny(), PriorConfig.tiny(), RefinerConfig.tiny())
    load_strict(restorer.tokenizer, torch.load(FIXTURES / "tiny_vae.pth", map_location="cpu", weights_only=True), "vae")
    load_strict(restorer.prior, prior_sd, "prior")
    load_strict(restorer.refiner, refiner_sd, "refiner")
    paths = [save_checkpoint(folder / "restorevar.pth", restorer, {"test": True})]
    torch.manual_seed(0)
    ldm = LatentDiffusionRestorer(tokenizer_ckpt=str(FIXTURES / "tiny_vae.pth"), tokenizer_preset="tiny",
                                  sampling_steps=3)
    paths.append(save_checkpoint(folder / "ldm.pth", ldm, {"test": True}))
    paths.append(save_checkpoint(folder / "nafnet.pth", RegressionRestorer()))
    return [str(p) for p in paths]


def test_compare_end_to_end(checkpoints, tmp_path, rvar_data_home, monkeypatch, capsys):
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    out = tmp_path / "compare"
    code = main(["compare", *checkpoints, "--data", "embedded-val", "--degradations", "rain,low_light:gain=0.3",
                 "--max-images", "1", "--size", "96", "--steps", "2", "--ladder-from", checkpoints[0], "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    for name in ("results.md", "results.csv", "quality_vs_time.png", "grid_rain.png", "grid_low_light_gain_0.3.png",
                 "ladder.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    pairs = {(r["model"], r["degradation"]) for r in rows}
    assert pairs == {(m, d) for m in ("restorevar", "ldm", "nafnet", "degraded input")
                     for d in ("rain", "low_light:gain=0.3", "overall")}
    # the quality ladder: both round trips on the clean image, then the stages per degradation; the tiny
    # reference restorer (no fine-tuned decoder) ends at "+ refiner"; the --ladder-from copy gets its own label
    with open(out / "ladder.csv") as handle:
        ladder = list(csv.DictReader(handle))
    assert {r["label"] for r in ladder} == {"restorevar", "restorevar'"}
    stages = {(r["stage"], r["degradation"]) for r in ladder if r["label"] == "restorevar"}
    assert stages == {("VQ round trip (clean)", "clean"), ("continuous round trip (clean)", "clean")} | {
        (s, d) for s in ("degraded input", "prior only", "+ refiner", "full, another photo's prior")
        for d in ("rain", "low_light:gain=0.3", "overall")}
    by = {(r["label"], r["stage"], r["degradation"]): float(r["psnr"]) for r in ladder}
    full = {r["degradation"]: float(r["psnr"]) for r in rows if r["model"] == "restorevar"}
    assert abs(by[("restorevar", "+ refiner", "overall")] - full["overall"]) < 1e-3  # the same restorations
    assert by[("restorevar", "+ refiner", "rain")] == by[("restorevar'", "+ refiner", "rain")]
    assert "Quality ladder" in (out / "results.md").read_text()
    assert all(float(r["seconds_per_image"]) > 0 and float(r["psnr"]) > 0 for r in rows)
    steps = {r["model"]: r["sampling_steps"] for r in rows}
    assert steps == {"restorevar": "4", "ldm": "2", "nafnet": "1", "degraded input": "0"}

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = mlflow.search_runs(experiment_names=["rvar-compare"], output_format="list")
    assert len(runs) == 1
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)}
    assert {"results.md", "results.csv", "quality_vs_time.png", "grid_rain.png"} <= artifacts
    assert "restorevar/overall/psnr" in runs[0].data.metrics


@pytest.mark.parametrize("text, message", [("jpeg:quality", "NAME:KEY=NUMBER"), ("jpeg:quality=high", "NUMBER"),
                                           ("nonsense:x=1", "unknown degradation")])
def test_bad_degradation_specs_are_one_line(checkpoints, tmp_path, capsys, text, message):
    code = main(["compare", checkpoints[0], "--degradations", text, "-o", str(tmp_path / "never"), "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and not (tmp_path / "never").exists()


def test_degradation_specs_fix_the_strength():
    from rvar.commands.compare import degradation_specs

    specs = degradation_specs("haze, gaussian_noise:sigma=25,jpeg:quality=12")
    assert [(s.label, s.name, s.options) for s in specs] == [
        ("haze", "haze", {}), ("gaussian_noise:sigma=25", "gaussian_noise", {"sigma": [25.0, 25.0]}),
        ("jpeg:quality=12", "jpeg", {"quality": [12.0, 12.0]})]


def test_bad_checkpoint_is_one_line_and_writes_nothing(checkpoints, tmp_path, capsys):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "never"
    code = main(["compare", checkpoints[0], str(bad), "-o", str(out), "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("rvar: error:") and "broken.ckpt" in err and "\n" not in err
    assert not out.exists()


def test_paired_folder(checkpoints, tmp_path, capsys):
    from PIL import Image

    for sub in ("input", "target"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    for number in range(2):
        for sub, value in (("input", 60), ("target", 120)):
            Image.new("RGB", (70, 70), (value, value + number, value)).save(tmp_path / "pairs" / sub / f"{number}.png")
    out = tmp_path / "paired"
    code = main(["compare", checkpoints[2], "--data", str(tmp_path / "pairs"), "-o", str(out), "--no-mlflow"])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["degradation"] for r in rows} == {"pairs", "overall"} and rows[0]["images"] == "2"


@pytest.mark.slow
def test_precision_bf16_scores_like_fp32(checkpoints, tmp_path, rvar_data_home, capsys):
    """`--precision bf16` (what `rvar demo` runs with `auto` on a bf16 CPU) runs every model and the ladder under
    bf16 autocast: the header says so, and the scores stay near fp32's."""
    scores = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        code = main(["compare", *checkpoints, "--data", "embedded-val", "--degradations", "rain,haze",
                     "--max-images", "1", "--size", "64", "--steps", "2", "--no-mlflow", "--precision", precision,
                     "-o", str(out)])
        assert code == 0, capsys.readouterr().err
        assert f"CPU, {precision}," in (out / "results.md").read_text()
        rows = list(csv.DictReader(open(out / "results.csv")))
        ladder = list(csv.DictReader(open(out / "ladder.csv")))
        scores[precision] = ({(r["model"], r["degradation"]): float(r["psnr"]) for r in rows},
                             {(r["label"], r["stage"], r["degradation"]): float(r["psnr"]) for r in ladder})
    for fp32, bf16 in zip(scores["fp32"], scores["bf16"]):
        assert fp32.keys() == bf16.keys()
        differences = {key: abs(fp32[key] - bf16[key]) for key in fp32}
        assert 0 < max(differences.values()) < 1.0, differences  # bf16 did run, and stayed close
