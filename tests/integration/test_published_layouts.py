"""`rvar fit --config experiments/restorevar.yaml` reads each of the paper's datasets from a replica in its published
layout (no renaming), through the published transforms and balanced sampler; `rvar test` prints the Table 1 layout
for named test sets. CPU sizes: the tiny parity model stands in for d16 and the images are small."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.tiny_reference import save_tiny_restorer
from tests.unit.test_published_data import make_replicas


def run(args, cwd, tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home"), "MLFLOW_TRACKING_URI": "",
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    return subprocess.run([sys.executable, "-m", "rvar", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=900)


def named(made, *names) -> str:
    return "[" + ", ".join(f"{{name: {n}, root: '{made[n][0]}'}}" for n in names) + "]"


@pytest.mark.slow
def test_published_config_fits_and_tests_on_published_layouts(tmp_path, request):
    made = make_replicas(tmp_path / "data")
    ckpt = save_tiny_restorer(tmp_path / "tiny.ckpt")
    root = request.config.rootpath
    done = run(["fit", "--config", str(root / "experiments/restorevar.yaml"), "--trainer.logger=false",
                "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
                "--trainer.precision=32-true", "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
                "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path / 'run'}",
                f"--model.init_args.init_from={ckpt}", "--model.init_args.prior.depth=2",
                "--model.init_args.prior.embed_dim=128", "--model.init_args.prior.num_heads=2",
                "--model.init_args.val_max_batches=1", "--data.init_args.crop_size=64",
                "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
                "--data.init_args.train_dirs", named(made, "reside-ots", "rain13k", "rain100l", "snow100k", "lolv1",
                                                     "gopro"),
                "--data.init_args.val_dirs", named(made, "sots-outdoor")], tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "restorevar_prior.ckpt").is_file()  # the stage's export, read by stage 2

    table = tmp_path / "table1.md"
    done = run(["test", "--config", str(root / "experiments/predict.yaml"), "--model.ckpt", str(ckpt),
                "--model.table_path", str(table), "--data.init_args.eval_protocol", "restorevar",
                "--data.init_args.eval_size", "64", "--data.init_args.num_workers", "0",
                "--data.init_args.test_dirs", named(made, "sots-outdoor", "rain100h", "snow100k", "lolv1", "gopro")],
               tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = table.read_text()
    for row, count in (("RESIDE", 2), ("Rain13K", 3), ("Snow100K", 2), ("LOLv1", 5), ("GoPro", 4)):
        assert f"| {row} | tiny.ckpt | {count} |" in text, text
    assert "| GoPro | RestoreVAR (paper, Table 1) | - | 23.96 |" in text
