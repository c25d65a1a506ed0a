"""``rvar bench``: RestoreVAR sampling vs the latent-diffusion baseline, side by side in one process."""
from __future__ import annotations

import argparse
import json
import sys

from rvar.errors import UserError
from rvar.files import atomic_write

HELP = "time RestoreVAR sampling against the matched latent-diffusion baseline (KV cache, bf16, FLOP/s)"
DESCRIPTION = """Speed side by side on the same random condition latent: RestoreVAR's greedy KV-cached sampling
vs a DiT latent-diffusion denoiser of about the prior's parameter count at 50 (DDIM) and 20 (DPM-Solver++) steps,
KV cache on vs off, fp32 vs bf16 autocast, and the prior's FLOP/s against a matmul peak timed in the same run.
Random weights (speed does not depend on them); nothing is downloaded.

sizes: tiny (64 px, 4x4 latent), d16-256 (16x16), d16-512 (32x32). --quick runs tiny and d16-256 with one
repeat (a few minutes on 2 CPU cores); the default runs all three.

--pipeline adds the whole restorer per image (tokenizer + prior + refiner + decoder), fp32 vs bf16, with peak
memory, each configuration in a fresh process.

example:
  rvar bench --quick --json bench.json
  rvar bench --sizes d16-256,d16-512 --pipeline-only
  rvar bench --sizes tiny --json tiny.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny + d16-256 only, one repeat at d16")
    parser.add_argument("--sizes", help="comma-separated sizes (tiny, d16-256, d16-512); overrides --quick's choice")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (default 3 tiny, 1 at d16 with "
                                                    "--quick, 3 otherwise)")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON to this file")
    parser.add_argument("--pipeline", action="store_true",
                        help="also time the whole restorer (tokenizer + prior + refiner + decoder) per image, fp32 "
                             "and bf16, with peak memory, each in a fresh process")
    parser.add_argument("--pipeline-only", action="store_true", help="only the --pipeline measurements")


def run(args: argparse.Namespace) -> int:
    from rvar.bench.sampling import QUICK_SIZES, SIZES, format_table, run_bench

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()] if args.sizes else \
        list(QUICK_SIZES if args.quick else SIZES)
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        raise UserError(f"--sizes: unknown size(s) {', '.join(unknown) or '(none)'}; known: {', '.join(SIZES)}")
    if args.repeats is not None and args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    report = {} if args.pipeline_only else run_bench(sizes, quick=args.quick, repeats=args.repeats, log=log)
    report["command"] = "rvar bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "rvar bench"
    if not args.pipeline_only:
        print(format_table(report))
    if args.pipeline or args.pipeline_only:
        from rvar.bench.pipeline import format_pipeline, run_pipeline_bench

        report["pipeline"] = run_pipeline_bench(sizes, repeats=args.repeats or 1, log=log)
        print(format_pipeline(report["pipeline"]))
    if args.json_path:
        text = json.dumps(report, indent=2) + "\n"
        path = atomic_write(args.json_path, lambda handle: handle.write(text.encode()))  # never half-written
        print(f"wrote {path}", file=sys.stderr)
    return 0
