"""`rvar test --data.init_args.eval_protocol restorevar` end to end on miniature replicas of RestoreVAR's five
test sets, laid out as data/README.md says (paired folders, different sizes and aspect ratios, png and jpg)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.tiny_reference import save_tiny_restorer

# folder name (data/README.md) -> Table 1 row
SETS = {"SOTS-outdoor": "RESIDE", "Snow100K": "Snow100K", "Rain13K": "Rain13K", "LOLv1": "LOLv1", "GoPro": "GoPro"}


def make_replicas(root):
    rng = np.random.default_rng(0)
    folders = []
    for number, name in enumerate(SETS):
        for n, (h, w) in enumerate([(40 + 8 * number, 72), (90, 50 + 4 * number)]):
            clean = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            degraded = np.clip(clean * 0.7 + rng.normal(0, 10, clean.shape), 0, 255).astype(np.uint8)
            for sub, image in (("input", degraded), ("target", clean)):
                (root / name / sub).mkdir(parents=True, exist_ok=True)
                suffix = ".jpg" if sub == "input" and n == 1 else ".png"  # names match by stem
                Image.fromarray(image).save(root / name / sub / f"{n:04d}{suffix}", quality=95)
        folders.append(str(root / name))
    return folders


@pytest.mark.slow
def test_rvar_test_follows_the_restorevar_protocol(tmp_path, request):
    folders = make_replicas(tmp_path / "data")
    ckpt = save_tiny_restorer(tmp_path / "tiny.ckpt")
    table = tmp_path / "table1.md"
    args = [sys.executable, "-m", "rvar", "test", "--config", str(request.config.rootpath / "experiments/predict.yaml"),
            "--model.ckpt", str(ckpt), "--model.table_path", str(table),
            "--data.init_args.test_dirs", "[" + ", ".join(folders) + "]",
            "--data.init_args.eval_protocol", "restorevar", "--data.init_args.eval_size", "128",
            "--data.init_args.eval_max_images", "2", "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "4"]
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home"), "PYTHONWARNINGS": "default"}
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = table.read_text()
    assert text.startswith("Evaluation protocol: `restorevar`")
    for row, paper in SETS.items():
        assert f"| {paper} | tiny.ckpt | 2 |" in text, text
    assert "| LOLv1 | RestoreVAR (paper, Table 1) | - | 21.72 | 0.782 | 0.126 |" in text
    assert "test/psnr/Snow100K" in done.stdout and "test/ssim/SOTS-outdoor" in done.stdout
    assert done.stderr.count("LPIPS skipped") == 1  # no AlexNet weights in this TORCH_HOME: one clear warning


def test_a_model_protocol_that_contradicts_the_data_is_a_user_error(tmp_path, request, rvar_data_home):
    ckpt = save_tiny_restorer(tmp_path / "tiny.ckpt")
    done = subprocess.run([sys.executable, "-m", "rvar", "test", "--config",
                           str(request.config.rootpath / "experiments/predict.yaml"), "--model.ckpt", str(ckpt),
                           "--model.protocol", "restorevar", "--data.init_args.num_workers", "0",
                           "--data.init_args.test_samples", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RVAR_DATA_HOME": str(rvar_data_home)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "differs from data.eval_protocol" in done.stderr.strip().splitlines()[-1]
