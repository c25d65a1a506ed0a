"""What a latent restorer gets by changing nothing: the demo tokenizer's round trips of the *degraded* test crops.

    python benchmarks/latent_identity.py /tmp/d60      # a `rvar demo` output folder

Prints per-degradation PSNR on the demo's held-out crops (the same samples, tiles and overlap as `rvar compare`)
for the continuous round trip decode(encode(degraded)) with the original and the fine-tuned decoder, the VQ round
trip, and the degraded input. A restorer whose residual is zero scores the continuous row.
"""
import sys, torch
from rvar.commands.compare import degradation_specs
from rvar.eval.compare import load_samples
from rvar.inference import run_tiled
from rvar.eval.metrics import psnr_per_image
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.nn.checkpoints import build_tokenizer, load_checkpoint
from rvar.pixels import to_signed, to_unit
torch.set_num_threads(2)
DEMO = sys.argv[1] if len(sys.argv) > 1 else "outputs/demo"
samples = load_samples("embedded-test", degradation_specs(EVAL_DEGRADATIONS), 256, 0, None)
toks = {"orig decoder": build_tokenizer(load_checkpoint(f"{DEMO}/restorer_refined.ckpt"), "a"),
        "FT decoder": build_tokenizer(load_checkpoint(f"{DEMO}/restorevar.ckpt"), "b")}
res = {}
for name, vae in toks.items():
    def cont(x, vae=vae):
        return to_unit(vae.decode(vae.encode_continuous(to_signed(x))))
    def vq(x, vae=vae):
        return to_unit(vae.reconstruct(to_signed(x)))
    for fname, fn in (("continuous", cont), ("VQ", vq)):
        if fname == "VQ" and name == "FT decoder":
            continue
        for s in samples:
            with torch.inference_mode():
                out = run_tiled(fn, s.degraded, 64, 16, overlap=32).clamp(0, 1)
            res.setdefault((name, fname), {}).setdefault(s.degradation, []).append(float(psnr_per_image(out[None], s.clean[None])[0]))
for s in samples:
    res.setdefault(("input", ""), {}).setdefault(s.degradation, []).append(float(psnr_per_image(s.degraded[None], s.clean[None])[0]))
for k, d in res.items():
    allv = [v for l in d.values() for v in l]
    print(k, f"overall {sum(allv)/len(allv):.2f}", {a: round(sum(v)/len(v), 2) for a, v in d.items()}, flush=True)
