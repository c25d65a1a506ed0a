"""`rvar predict` / `rvar test` with RestorerModule on a real checkpoint and the embedded val photos."""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from tests.tiny_reference import save_tiny_restorer

REPO_CONFIG = "experiments/predict.yaml"


@pytest.mark.slow
def test_predict_writes_restored_images_and_test_logs_metrics(tmp_path, rvar_data_home, request):
    ckpt = save_tiny_restorer(tmp_path / "tiny.ckpt")
    config = request.config.rootpath / REPO_CONFIG
    common = ["--config", str(config), "--model.ckpt", str(ckpt), "--data.init_args.test_samples", "6",
              "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "3"]
    out = tmp_path / "pred"
    proc = subprocess.run([sys.executable, "-m", "rvar", "predict", *common,
                           "--trainer.callbacks+=rvar.lit.restorer.RestoredImageWriter",
                           f"--trainer.callbacks.output_dir={out}"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    images = sorted(p for p in out.rglob("*.png") if p.name != "grid.png")
    assert len(images) == 6 and all(Image.open(p).size == (64, 64) for p in images)
    assert (out / "grid.png").exists()
    proc = subprocess.run([sys.executable, "-m", "rvar", "test", *common], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test/psnr" in proc.stdout and "test/ssim" in proc.stdout
