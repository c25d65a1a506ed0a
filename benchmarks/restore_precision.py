"""What bf16 restorations buy the fidelity stage: one restorer checkpoint restores the same 64 tiles (a 256 px image
in 16 tiles, four times) in fp32 and under bf16 autocast, interleaved, then both restore validation photos, to
compare their quality.

    python benchmarks/restore_precision.py OUT/restorer_decoded.ckpt [--repeats 3] [--max-images 3]

Prints seconds per 256 px image for each precision (median of the repeats), the mean PSNR of each precision's
restorations against the clean photos, and the PSNR between the two restorations.
"""
import argparse
import statistics
import time

import torch

from rvar.commands.compare import degradation_specs
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.eval.compare import load_samples
from rvar.eval.metrics import psnr_per_image
from rvar.inference import restorer_fn, run_tiled
from rvar.nn.checkpoints import build_restorer, load_checkpoint

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("checkpoint")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--max-images", type=int, default=3, help="validation photos per degradation for the quality check")
args = parser.parse_args()

torch.set_num_threads(2)
restorer = build_restorer(load_checkpoint(args.checkpoint, kinds=("restorer",)), args.checkpoint).eval()
side = restorer.image_size
g = torch.Generator().manual_seed(0)
tiles = torch.rand(64, 3, side, side, generator=g) * 2 - 1
context = torch.rand(64, 3, side, side, generator=g) * 2 - 1
times = {"fp32": [], "bf16": []}
for _ in range(args.repeats):
    for precision in times:
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            restorer.restore(tiles, context_B3HW=context if restorer.uses_context else None, keep_round_trip=True,
                             fidelity=0.0)
        times[precision].append((time.perf_counter() - start) / 4)  # 64 tiles = four 256 px images of 16 tiles
for precision, t in times.items():
    print(f"{precision}: {statistics.median(t):.3f} s per 256 px image ({', '.join(f'{x:.3f}' for x in t)})")
print(f"ratio fp32 / bf16: {statistics.median(times['fp32']) / statistics.median(times['bf16']):.2f}")

samples = load_samples("embedded-val", degradation_specs(EVAL_DEGRADATIONS), 256, 0, args.max_images)
outputs = {}
for precision in times:
    fn = restorer_fn(restorer, torch.device("cpu"), precision, fidelity=0.0)
    outputs[precision] = [run_tiled(fn, s.degraded, side, batch_size=16, overlap=0).clamp(0, 1) for s in samples]


def psnr(a, b):
    return float(psnr_per_image(a[None], b[None])[0])


for precision, outs in outputs.items():
    print(f"{precision}: mean PSNR {statistics.mean(psnr(o, s.clean) for o, s in zip(outs, samples)):.4f} dB "
          f"on {len(samples)} images")
print(f"fp32 vs bf16 restorations: {statistics.mean(psnr(a, b) for a, b in zip(*outputs.values())):.2f} dB")
