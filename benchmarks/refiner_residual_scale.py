"""Scale a trained refiner's residual by alpha (0 = leave the degraded latent unchanged, 1 = as trained) and score it.

    python benchmarks/refiner_residual_scale.py embedded-val     # or embedded-test; reads /tmp/d60/restorevar.ckpt

Per-degradation PSNR through the same tiles as `rvar compare`. A diagnostic, not a recipe.
"""
import sys, torch
from rvar.commands.compare import degradation_specs
from rvar.eval.compare import load_samples
from rvar.inference import load_restoration_model, run_tiled
from rvar.eval.metrics import psnr_per_image
from rvar.demo.runner import EVAL_DEGRADATIONS
torch.set_num_threads(2)
m = load_restoration_model("/tmp/d60/restorevar.ckpt", torch.device("cpu"), "fp32")
ref = m.module.refiner
w0 = ref.proj_out.weight.detach().clone()
samples = load_samples(sys.argv[1], degradation_specs(EVAL_DEGRADATIONS), 256, 0, None)
for a in (0.0, 1.0):
    ref.proj_out.weight.data.copy_(w0 * a)
    res = {}
    for i, s in enumerate(samples):
        torch.manual_seed(i)
        with torch.inference_mode():
            out = run_tiled(m.fn, s.degraded, m.native, 16, overlap=32).clamp(0, 1)
        res.setdefault(s.degradation, []).append(float(psnr_per_image(out[None], s.clean[None])[0]))
    allv = [v for l in res.values() for v in l]
    print(a, f"mean {sum(allv)/len(allv):.2f}", {k: round(sum(v)/len(v), 2) for k, v in res.items()}, flush=True)
