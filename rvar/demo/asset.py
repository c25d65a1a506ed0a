"""Rebuild the tiny networks that ship with rvar for ``rvar demo`` (``make assets``).

RestoreVAR starts from VAR's released tokenizer and class-conditional prior, pre-trained on ImageNet; these files
play that part for the CPU demo, so the demo's minutes go to learning restoration:

* ``tokenizer``: ``experiments/tiny/tokenizer.yaml`` on the clean embedded training images
  (``rvar/assets/tokenizer_cpu_f8.ckpt``).
* ``prior``: ``experiments/tiny/prior_pretrain.yaml``, next-scale prediction of the clean training images' tokens
  given the clean image itself or, for half the samples, a null condition (VAR's pre-training has no degraded
  images either), on the shipped tokenizer (``rvar/assets/prior_cpu_f8.ckpt``).
* ``refiner``: ``experiments/tiny/refiner_pretrain.yaml``, the published refiner's task on the same clean images:
  the shipped prior's quantised latent of a clean image (sampled with that image as its condition) to the image's
  continuous latent, its degraded-image inputs hidden (``rvar/assets/refiner_cpu_f8.ckpt``). An experiment, not
  shipped and not in ``make assets``: in one demo's chain (BENCHMARKS.md, eleventh round) a refiner stage started from
  it scored +1.11 dB ungated on the validation photos against +1.35 from scratch, so the demo trains its refiner
  from scratch. ``experiments/tiny/refiner.yaml`` with ``model.init_args.init_from`` set to it reproduces that.
* ``ldm``: ``experiments/tiny/ldm_pretrain.yaml``, the LDM baseline's denoiser pre-trained the same way on the
  same clean images and tokenizer for the same CPU time (``rvar/assets/ldm_cpu_f8.ckpt``), so the head-to-head
  starts both latent restorers from the same kind of pre-training.

Each asset is a real ``rvar fit`` run for ``--steps`` optimizer steps or ``--minutes`` of wall time; the file is
copied to ``rvar/assets`` with a ``.json`` beside it that says how it was made (command, steps, wall time, data
version and, for the tokenizer, the round-trip PSNR on the test photos).

    python -m rvar.demo.asset tokenizer --steps 5000 --work outputs/assets
    python -m rvar.demo.asset prior --minutes 20 --work outputs/assets
    python -m rvar.demo.asset ldm --minutes 20 --work outputs/assets
    python -m rvar.demo.asset ldm --minutes 15 --continue    # 15 more minutes from the shipped file
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
from typing import Dict, List, Optional

COMMAND = "make assets"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
# name -> its config under experiments/tiny, the file its ExportCheckpoint writes (under the run folder) and its
# file under rvar/assets
ASSETS: Dict[str, Dict[str, str]] = {
    "tokenizer": {"config": "tokenizer.yaml", "export": "outputs/tiny/tokenizer.ckpt", "file": "tokenizer_cpu_f8.ckpt"},
    "prior": {"config": "prior_pretrain.yaml", "export": "outputs/tiny/prior_pretrained.ckpt",
              "file": "prior_cpu_f8.ckpt"},
    "refiner": {"config": "refiner_pretrain.yaml", "export": "outputs/tiny/refiner_pretrained.ckpt",
                "file": "refiner_cpu_f8.ckpt"},
    "ldm": {"config": "ldm_pretrain.yaml", "export": "outputs/tiny/ldm_pretrained.ckpt", "file": "ldm_cpu_f8.ckpt"},
}


def shipped(name: str) -> Path:
    """The shipped file of asset ``name``."""
    return ASSETS_DIR / ASSETS[name]["file"]


def round_trips(path: Path, split: str = "test") -> dict:
    """PSNR (dB) of the VQ and continuous round trips of ``split``'s photos (256 px crops, tiled as
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
        for p in scan_clean_folders([ensure_embedded() / split]):
            clean = centre_crop(read_image(p).rgb, 256, p)
            for name, fn in fns.items():
                out = run_tiled(fn, clean, tokenizer.image_size, 16)
                scores[name].append(float(psnr_per_image(out[None], clean[None])[0]))
    keys = {RUNGS[0]: f"{split}_psnr_vq_db", RUNGS[1]: f"{split}_psnr_continuous_db"}
    return {keys[k]: round(mean(v), 2) for k, v in scores.items()}


def describe(name: str, path: Path, budget: str, seconds: float, steps: int, extra: Optional[dict] = None) -> dict:
    from rvar.data.embedded import VERSION
    from rvar.demo.runner import file_digest

    about = {"command": f"{COMMAND} (python -m rvar.demo.asset {name} {budget})",
             "config": f"experiments/tiny/{ASSETS[name]['config']}", "steps": steps, "minutes": round(seconds / 60, 1),
             "data": f"embedded set v{VERSION}, train split, clean images only", "sha256_16": file_digest(path)}
    if name == "tokenizer":
        about.update(round_trips(path, "val"))
        about.update(round_trips(path, "test"))
    else:
        about["tokenizer_sha256_16"] = file_digest(shipped("tokenizer"))
    if name == "refiner":  # its inputs are that prior's samples
        about["prior_sha256_16"] = file_digest(shipped("prior"))
    about.update(extra or {})
    path.with_suffix(".json").write_text(json.dumps(about, indent=1) + "\n")
    return about


def fit_command(name: str, work: Path, steps: Optional[int], minutes: Optional[float],
                start: Optional[Path] = None) -> List[str]:
    from rvar.demo.runner import TINY, _seconds_to_max_time

    cmd = [sys.executable, "-m", "rvar", "fit", "--config", str(TINY / ASSETS[name]["config"]),
           "--trainer.default_root_dir", str(work / "run"), "--trainer.val_check_interval", "500"]
    if name == "refiner":
        cmd += ["--model.init_args.prior_ckpt", str(shipped("prior"))]
    elif name != "tokenizer":
        cmd += ["--model.init_args.tokenizer_ckpt", str(shipped("tokenizer"))]
    if start is not None:  # continue the shipped network's training (the tokenizer keeps its own init_from rule)
        cmd += ["--model.init_args.init_from", str(start)]
    if minutes is not None:
        cmd += ["--trainer.max_time", _seconds_to_max_time(int(minutes * 60)), "--trainer.max_steps", "-1"]
    else:
        cmd += ["--trainer.max_steps", str(steps)]
    return cmd


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m rvar.demo.asset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asset", nargs="?", default="tokenizer", choices=list(ASSETS),
                        help="which network to rebuild (default tokenizer)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps (tokenizer default 5000)")
    budget.add_argument("--minutes", type=float, help="wall-time budget instead of a step count")
    parser.add_argument("--work", default="outputs/assets", help="run folder (default outputs/assets/<asset>)")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="start from the shipped file instead of from scratch; its .json then adds the new steps "
                             "and minutes to the old (prior, refiner and ldm only)")
    args = parser.parse_args(argv)
    if args.resume and args.asset == "tokenizer":
        parser.error("--continue is for the prior, refiner and ldm assets")
    if args.steps is None and args.minutes is None:
        args.steps = 5000
    work = (Path(args.work) / args.asset).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    target = shipped(args.asset)
    start_file, before = None, {}
    if args.resume:
        if not target.exists():
            parser.error(f"--continue: {target} is missing; build it first without --continue")
        start_file = work / "start.ckpt"
        shutil.copyfile(target, start_file)
        info = target.with_suffix(".json")
        before = json.loads(info.read_text()) if info.exists() else {}
    start = time.perf_counter()
    subprocess.run(fit_command(args.asset, work, args.steps, args.minutes, start_file), cwd=work, env=env, check=True)
    seconds = time.perf_counter() - start
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / ASSETS[args.asset]["export"], target)
    steps = int(torch.load(target, map_location="cpu", weights_only=True).get("meta", {}).get("global_step", 0))
    budget_text = f"--minutes {args.minutes:g}" if args.minutes is not None else f"--steps {args.steps}"
    extra = None
    if args.resume:
        budget_text += " --continue"
        seconds += 60 * float(before.get("minutes", 0))
        steps += int(before.get("steps", 0))
        extra = {"continued_from": {k: before[k] for k in ("command", "steps", "minutes", "sha256_16") if k in before}}
    about = describe(args.asset, target, budget_text, seconds, steps, extra)
    print(json.dumps(about, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
