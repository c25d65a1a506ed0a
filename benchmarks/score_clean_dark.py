"""Score restorer checkpoints on the 6 first validation photos: the demo's 7 degradations, mild noise (sigma 5) and
mild JPEG (q50) as gains over the inputs, and clean photos and clean photos x0.35 ("dark") passed through, as PSNR.

    python benchmarks/score_clean_dark.py FIDELITY CKPT [CKPT ...]
"""
import sys, torch
from rvar.commands.compare import degradation_specs
from rvar.eval.compare import load_samples, Sample
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.inference import load_restoration_model, run_tiled
from rvar.eval.metrics import psnr_per_image, ciede2000_per_image
fid = float(sys.argv[1]); cks = sys.argv[2:]
split='embedded-val'
samples = load_samples(split, degradation_specs(EVAL_DEGRADATIONS+",gaussian_noise:sigma=5,jpeg:quality=50"), 256, 0, 6)
names = sorted({s.name for s in samples})
clean = {s.name: s.clean for s in samples}
samples += [Sample(n, 'clean', clean[n], clean[n]) for n in names]
samples += [Sample(n, 'dark', clean[n]*0.35, clean[n]*0.35) for n in names]
p = lambda a, b: float(psnr_per_image(a[None].clamp(0,1), b[None])[0])
for ck in cks:
    m = load_restoration_model(ck, torch.device('cpu'), 'fp32', fidelity=fid)
    per = {}
    with torch.inference_mode():
        for i, s in enumerate(samples):
            torch.manual_seed(i)
            out = run_tiled(m.fn, s.degraded, m.native, 16, overlap=32).clamp(0, 1) if m.native else m.fn(s.degraded[None])[0].clamp(0,1)
            g = p(out, s.clean) - (p(s.degraded, s.clean) if s.degradation not in ('clean','dark') else 0.0)  # clean/dark: PSNR itself
            per.setdefault(s.degradation, []).append(g)
    main = [g for k, v in per.items() if k in [d for d in EVAL_DEGRADATIONS.split(',')] for g in v]
    print(f"{ck.split('/')[-2]}/{ck.split('/')[-1]} fid{fid} val7 {sum(main)/len(main):+.2f} | " + ' '.join(f"{k.split(':')[0][:5]}{(':'+k.split('=')[-1]) if '=' in k else ''} {sum(v)/len(v):+.2f}" for k, v in per.items()), flush=True)
