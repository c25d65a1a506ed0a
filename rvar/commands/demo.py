"""``rvar demo``: the whole method on the embedded photos, from nothing to restored photos and a report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train every tiny stage on the embedded photos, compare with the baselines, write a report"
DESCRIPTION = """The first thing to run. On the embedded training set (photos that installed packages ship, plus
dead-leaves images), trains the RestoreVAR prior, its refiner and decoder fine-tune, and the tiny LDM and NAFNet
baselines (each a real `rvar fit` run tracked in MLflow, splitting --minutes between them) in the latent space of
the tiny tokenizer that ships with rvar (trained on the clean training images only, as RestoreVAR starts from
VAR's released tokenizer; --train-tokenizer trains one within the budget instead),
then restores the 15 natural test photos that no stage trained on, as 256 px crops under haze, rain, snow, low light, motion
blur, noise and JPEG (`rvar compare`, with RestoreVAR's quality ladder), and writes OUT/report.md and
OUT/report.html. OUT/restorevar.ckpt is a restorer checkpoint for `rvar restore`. Running it again reuses
finished stages (and the comparison, when nothing it scores changed) and resumes interrupted ones; another
--minutes retrains. Demos with other budgets in sibling
folders (--out outputs/demo60) appear in the report's quality-versus-budget plot.

examples:
  rvar demo                          # about 15 minutes on 2 CPU cores
  rvar demo --minutes 60 --out outputs/demo60
  rvar demo --fresh                  # start over
  rvar demo --train-tokenizer --out outputs/demo-scratch   # every stage from nothing, tokenizer included
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="wall-time budget for the whole demo after install (default 15), shared between stages")
    parser.add_argument("--fresh", action="store_true", help="delete OUT first and retrain every stage")
    parser.add_argument("--eval-images", type=int, default=None, metavar="N",
                        help="score only the first N held-out photos (default all 5; fewer is faster, for checks)")
    parser.add_argument("--train-tokenizer", action="store_true",
                        help="train the tiny tokenizer within the budget instead of starting from the shipped one "
                             "(rvar/assets/tokenizer_cpu_f8.ckpt, rebuilt by `make tokenizer-asset`)")


def run(args: argparse.Namespace) -> int:
    from rvar.demo.runner import run_demo

    if args.eval_images is not None and args.eval_images < 1:
        from rvar.errors import UserError

        raise UserError("--eval-images must be at least 1")
    report = run_demo(Path(args.out), args.minutes, args.fresh, log=lambda m: print(m, file=sys.stderr),
                      eval_images=args.eval_images, train_tokenizer=args.train_tokenizer)
    print(f"\nreport: {report}  (and {report.with_suffix('.html')})", file=sys.stderr)
    print(f"restore your photos: rvar restore PHOTO --ckpt {report.parent / 'restorevar.ckpt'} -o restored/",
          file=sys.stderr)
    return 0
