"""What the fidelity stage's input statistics cost, before and after the thirteenth round (BENCHMARKS.md): the
dark channel's 15 px min filter as one square min-pool and the |Laplacian| as a one-channel 3x3 convolution (the
old forms, rebuilt here) against rvar's row-then-column doubling filter and shifted slices, side by side in one
run: each filter alone, then the statistics of the batch the stage classifies (32 images of 256 px) and of the 4
it restores.

    python benchmarks/switch_features_cost.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import json
import time
from unittest import mock

import torch
import torch.nn.functional as F

import rvar.nn.fidelity as fidelity


def old_min_filter(t: torch.Tensor, side: int) -> torch.Tensor:
    return -F.max_pool2d(-t, side, 1, side // 2)


def old_detail(grey: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernel.to(grey.dtype)).abs()


def timed(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = torch.rand(32, 3, 256, 256) * 2 - 1
    gate = fidelity.FidelityGate(fidelity.FidelityConfig(hidden=4, image_stats=True, standardise=True))
    x, restored, round_trip = batch[:4], batch[4:8], batch[8:12]
    dark = (batch.amin(1, keepdim=True) + 1) / 2
    grey = batch.mean(1, keepdim=True)
    filters = {"15 px min filter (32 images)": (lambda: old_min_filter(dark, 15), lambda: fidelity._min_filter(dark, 15)),
               "|Laplacian| (32 images)": (lambda: old_detail(grey), lambda: fidelity._detail(grey))}
    results = {}
    with torch.no_grad():
        for name, (old_fn, new_fn) in filters.items():
            old, new = timed(old_fn, args.repeats), timed(new_fn, args.repeats)
            gap = float((old_fn() - new_fn()).abs().max())
            results[name] = {"old_ms": round(old, 1), "new_ms": round(new, 1), "speedup": round(old / new, 2),
                             "max_abs_difference": gap}
            print(f"{name:28s} old {old:7.1f} ms  new {new:7.1f} ms  x{old / new:.2f}  (values differ by {gap:.1e})")
    cases = {"switch_features (32 images)": lambda: fidelity.switch_features(batch),
             "gate statistics (4 images)": lambda: gate.statistics(x, restored, round_trip)}
    with torch.no_grad():
        for name, fn in cases.items():
            new = timed(fn, args.repeats)
            with mock.patch.object(fidelity, "_min_filter", old_min_filter), \
                    mock.patch.object(fidelity, "_detail", old_detail):
                old = timed(fn, args.repeats)
                old_value = fn()
            gap = float((fn() - old_value).abs().max())
            results[name] = {"old_ms": round(old, 1), "new_ms": round(new, 1), "speedup": round(old / new, 2),
                             "max_abs_difference": gap}
            print(f"{name:28s} old {old:7.1f} ms  new {new:7.1f} ms  x{old / new:.2f}  (values differ by {gap:.1e})")
    print(json.dumps({"threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
