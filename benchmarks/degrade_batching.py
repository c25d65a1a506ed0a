"""Seconds per batch of the degradation pipeline: per-image device stage (before) vs one call per op (now).

Run: nice -n 19 env OMP_NUM_THREADS=1 NO_ALBUMENTATIONS_UPDATE=1 python benchmarks/degrade_batching.py
The tiny configs' seven degradations, one_of, batch 16, on the CPU (one thread; CPU seconds of this process, so a
niced run on a busy machine measures the same). Three paths, same samples:
  before: worker draws the plan and applies Albumentations ops; the device stage draws the plan again from the
          sample seed and applies the Kornia ops image by image (the former ``_seed`` path);
  worker: everything per sample in the worker (``pipeline(image, seed)``);
  now:    worker as before, plans collated, the device stage calls each Kornia op once per batch.
"""
import statistics
import time

import torch

from rvar.data.degrade import DegradationPipeline, sample_seed

SPECS = ["haze", "rain", "snow", "low_light", "motion_blur", "gaussian_noise", "jpeg"]
BATCH, REPEATS = 16, 3


def timed(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main() -> None:
    torch.set_num_threads(1)
    pipeline = DegradationPipeline(SPECS, "one_of", seed=0)
    for side in (64, 256):
        images = torch.rand(BATCH * REPEATS, 3, side, side, generator=torch.Generator().manual_seed(side))
        times, diff = {"before": [], "worker": [], "now": []}, 0.0
        for rep in range(-1, REPEATS):  # rep -1: a warm-up on 2 samples, not counted
            keys = range(rep * BATCH, (rep + 1) * BATCH) if rep >= 0 else range(2)
            seeds = [sample_seed(0, "train", k) for k in keys]
            clean = images[keys.start:keys.stop]
            t_worker, items = timed(lambda: [pipeline.worker_stage(c, s) for c, s in zip(clean, seeds)])
            degraded = torch.stack([i["degraded"] for i in items])
            plans = torch.stack([i["plan"] for i in items])
            t_before, old = timed(lambda: torch.stack([
                pipeline.apply(d[None], pipeline.plan(s)[None], device_ops=True)[0] for d, s in zip(degraded, seeds)]))
            t_all, direct = timed(lambda: torch.stack([pipeline(c, s)[0] for c, s in zip(clean, seeds)]))
            t_now, new = timed(lambda: pipeline.apply(degraded, plans, device_ops=True))
            assert torch.equal(old, direct)
            diff = max(diff, float((old - new).abs().max())) if rep >= 0 else 0.0
            if rep >= 0:
                times["before"].append(t_worker + t_before)
                times["worker"].append(t_all)
                times["now"].append(t_worker + t_now)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"batch {BATCH} @ {side}px: before {med['before']:.4f} s/batch, all-in-worker {med['worker']:.4f}, "
              f"now {med['now']:.4f} (before/now {med['before'] / med['now']:.2f}x, "
              f"worker/now {med['worker'] / med['now']:.2f}x); max |now - before| {diff:.2g}")


if __name__ == "__main__":
    main()
