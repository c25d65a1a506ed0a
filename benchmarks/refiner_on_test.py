"""Score restorer checkpoints on the demo's held-out photos, per degradation, as `rvar compare` does.

    python benchmarks/refiner_on_test.py OUT/restorer_refined.ckpt [MORE.ckpt ...]

The embedded test split (5 photos, 256 px centre crops, the demo's 7 degradations, 35 images), 64 px tiles
overlapping by half, whole-image context for models that read it (through ``LoadedModel.fn``). Prints the mean
PSNR, the mean gain over the degraded inputs and the PSNR per degradation. Used for the refiner-only experiments
in BENCHMARKS.md (issue #11).
"""
import sys

import torch

from rvar.commands.compare import degradation_specs
from rvar.eval.compare import load_samples
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.inference import load_restoration_model, run_tiled
from rvar.eval.metrics import mean, psnr_per_image

torch.set_num_threads(2)
samples = load_samples("embedded-test", degradation_specs(EVAL_DEGRADATIONS), 256, 0, None)
inputs = [float(psnr_per_image(s.degraded[None], s.clean[None])[0]) for s in samples]
for path in sys.argv[1:]:
    model = load_restoration_model(path, torch.device("cpu"), "fp32")
    scores = {}
    for number, sample in enumerate(samples):
        torch.manual_seed(number)
        with torch.inference_mode():
            out = run_tiled(model.fn, sample.degraded, model.native, 16, overlap=32).clamp(0, 1)
        scores.setdefault(sample.degradation, []).append(float(psnr_per_image(out[None], sample.clean[None])[0]))
    every = [v for values in scores.values() for v in values]
    per = {name.split(":")[0]: round(mean(values), 2) for name, values in scores.items()}
    print(f"{path}: mean {mean(every):.2f} dB, gain {mean(every) - mean(inputs):+.2f} dB, {per}", flush=True)
