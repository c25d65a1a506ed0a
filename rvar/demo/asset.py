"""Rebuild the tokenizer that ships with rvar for ``rvar demo`` (``make tokenizer-asset``).

The tiny tokenizer config (``experiments/tiny/tokenizer.yaml``) is trained with ``rvar fit`` for ``--steps``
optimizer steps on the clean embedded training images, then copied to ``rvar/assets/tokenizer_cpu_f8.ckpt`` with a
``.json`` beside it that says how it was made (command, steps, wall time, data version, round-trip PSNR on the
held-out test photos). RestoreVAR itself starts from VAR's released tokenizer; this file plays that part for the
CPU demo, so the demo's minutes go to the restoration stages.

    python -m rvar.demo.asset --steps 5000 --work outputs/tokenizer-asset
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMAND = "make tokenizer-asset"


def round_trips(path: Path) -> dict:
    """PSNR (dB) of the VQ and continuous round trips of the held-out test photos (256 px crops, tiled as
    ``rvar restore`` does): the quality ladder's first two rungs for a tokenizer alone."""
    import torch

    from rvar.eval.compare import centre_crop
    from rvar.data.datasets import scan_clean_folders
    from rvar.data.embedded import ensure_embedded
    from rvar.inference import run_tiled
    from rvar.io import read_image
    from rvar.eval.ladder import RUNGS, round_trip_functions
    from rvar.eval.metrics import mean, psnr_per_image
    from rvar.nn.checkpoints import build_tokenizer, load_checkpoint

    tokenizer = build_tokenizer(load_checkpoint(path, kinds=("tokenizer",)), path).eval()
    fns = round_trip_functions(tokenizer)
    scores = {name: [] for name in fns}
    with torch.inference_mode():
        for p in scan_clean_folders([ensure_embedded() / "test"]):
            clean = centre_crop(read_image(p).rgb, 256, p)
            for name, fn in fns.items():
                out = run_tiled(fn, clean, tokenizer.image_size, 16)
                scores[name].append(float(psnr_per_image(out[None], clean[None])[0]))
    keys = {RUNGS[0]: "test_psnr_vq_db", RUNGS[1]: "test_psnr_continuous_db"}
    return {keys[k]: round(mean(v), 2) for k, v in scores.items()}


def describe(path: Path, steps: int, seconds: float) -> dict:
    from rvar.data.embedded import VERSION
    from rvar.demo.runner import file_digest

    about = {"command": f"{COMMAND} (python -m rvar.demo.asset --steps {steps})",
             "config": "experiments/tiny/tokenizer.yaml", "steps": steps, "minutes": round(seconds / 60, 1),
             "data": f"embedded set v{VERSION}, train split, clean images only", "sha256_16": file_digest(path),
             **round_trips(path)}
    path.with_suffix(".json").write_text(json.dumps(about, indent=1) + "\n")
    return about


def main(argv=None) -> int:
    from rvar.demo.runner import SHIPPED_TOKENIZER, TINY

    parser = argparse.ArgumentParser(prog="python -m rvar.demo.asset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="optimizer steps (default 5000)")
    parser.add_argument("--work", default="outputs/tokenizer-asset", help="run folder (default outputs/tokenizer-asset)")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rvar", "fit", "--config", str(TINY / "tokenizer.yaml"),
                    "--trainer.max_steps", str(args.steps), "--trainer.val_check_interval", "1000",
                    "--trainer.default_root_dir", str(work / "run")], cwd=work, env=env, check=True)
    seconds = time.perf_counter() - start
    SHIPPED_TOKENIZER.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "outputs" / "tiny" / "tokenizer.ckpt", SHIPPED_TOKENIZER)
    print(json.dumps(describe(SHIPPED_TOKENIZER, args.steps, seconds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
