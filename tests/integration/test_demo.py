"""`rvar demo` end to end with a one-minute budget: every stage is a real `rvar fit`, then compare and report."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest

from rvar.demo.runner import EVAL_DEGRADATIONS
from tests.tiny_reference import FIXTURES


@pytest.mark.slow
def test_demo_with_a_tiny_budget_produces_a_report_and_a_restorer(tmp_path, rvar_data_home):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "rvar", "demo", "--minutes", "1", "--out", str(out),
                           "--eval-images", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("report.md", "report.html", "restorevar.ckpt", "refiner_without_prior.ckpt", "ldm.ckpt",
                 "nafnet.ckpt", "prior_pretrained.ckpt", "ldm_pretrained.ckpt", "mlflow.db",
                 "compare/results.csv", "compare/quality_vs_time.png"):
        assert (out / name).exists(), name
    report = (out / "report.md").read_text()
    assert "RestoreVAR" in report and "PSNR" in report and "report" in proc.stderr
    assert "Quality ladder" in report and (out / "compare" / "ladder.csv").exists()
    with open(out / "compare" / "results.csv") as handle:  # the held-out evaluation set, as the demo defines it
        scored = {row["degradation"] for row in csv.DictReader(handle)}
    assert scored == {*EVAL_DEGRADATIONS.split(","), "overall"}
    assert json.loads((out / "demo.json").read_text())["minutes"] == 1
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # the restorer it wrote works with `rvar restore`
    restored = tmp_path / "restored"
    proc = subprocess.run([sys.executable, "-m", "rvar", "restore", str(FIXTURES / "tiny_degraded_0.png"),
                           "--ckpt", str(out / "restorevar.ckpt"), "-o", str(restored)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (restored / "tiny_degraded_0.png").exists()
    # RestoreVAR and its ablation end with a learned fidelity path; the ladder still sees the fine-tuned decoder
    from rvar.nn.checkpoints import load_checkpoint

    for name in ("restorevar.ckpt", "refiner_without_prior.ckpt"):
        ckpt = load_checkpoint(out / name, kinds=("restorer",))
        assert ckpt["model"]["init_args"]["gate"] is not None and ckpt["meta"]["stage"] == "fidelity", name
    assert load_checkpoint(out / "restorevar.ckpt")["meta"]["decoder"] == "finetuned"
    # each stage's budget is recorded, so a rerun derives the same configs however long its reused stages take
    plan = json.loads((out / "stages" / "budgets.json").read_text())
    assert plan["key"]["minutes"] == 1 and set(plan["budgets"]) == {"prior", "refiner", "decoder", "fidelity",
                                                                      "noprior", "noprior_fidelity", "ldm", "nafnet"}
    # running it again reuses every finished stage (the tokenizer is the shipped one, not a stage)
    proc = subprocess.run([sys.executable, "-m", "rvar", "demo", "--minutes", "1", "--out", str(out),
                           "--eval-images", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("reusing") == 9 and "tokenizer: the shipped one" in proc.stderr
    assert "comparison: reusing" in proc.stderr and "comparing" not in proc.stderr  # nothing changed: not rescored
    assert json.loads((out / "stages" / "compare.json").read_text())["seconds"] > 0
    report = (out / "report.md").read_text()
    assert "Quality ladder" in report  # the report is written again from it
    # and says what it reused, with the seconds those stages took when they were trained
    assert "this run, which reused 8 finished stages and the comparison from an earlier run" in report, report[:3000]
    assert re.search(r"\| prior \| reused \| [1-9][0-9]* \|", report), report[-3000:]
