"""Apply a checkpoint's learned fidelity gate to tensors from collect.py (whole 256 px crops) and print, per
degradation, its gain over the inputs beside the fixed `--fidelity 0.5`, and the mean gates.

    W=0.5 python benchmarks/gate_study/apply.py GATED.ckpt VAL.pt [REAL.pt]      # W: the gate's weight (default 1)
"""
import torch, sys
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
W = float(__import__("os").environ.get("W", "1"))
r = build_restorer(load_checkpoint(sys.argv[1]), sys.argv[1]); g = r.gate.eval()
for f in sys.argv[2:]:
    rows = torch.load(f); per = {}; A=[];Bs=[]
    with torch.no_grad():
        for row in rows:
            x, R, T = (row[k][None]*2-1 for k in ('x','R','T'))
            out = ((g(x, R, T, W).clamp(-1,1)+1)/2)[0]
            a, b = g.gates(x, R, T); A.append(a.mean()); Bs.append(b.mean())
            p = lambda t: float(psnr_per_image(t[None].clamp(0,1), row['clean'][None])[0])
            per.setdefault(row['deg'], []).append((p(out)-p(row['x']), p(row['R']+0.5*(row['x']-row['T']))-p(row['x']), float(a.mean()), float(b.mean())))
    for k, v in per.items():
        n=len(v); print(f"{f.split('/')[-1]} {k:15s} gate {sum(t[0] for t in v)/n:+.2f}  fid0.5 {sum(t[1] for t in v)/n:+.2f}  a {sum(t[2] for t in v)/n:.2f} b {sum(t[3] for t in v)/n:.2f}")
