"""The tenth round's look at low light: for each low-light image of a collect_buffer.py buffer and of collect_val.py
tensors (both from GATED.ckpt's restorer), its mean brightness and the PSNR of the input, of the restorer's output R
and of the gate's output G (without its image switch).

    python benchmarks/gate_study/dark_low_light.py GATED.ckpt BUFFER.pt VAL.pt | sort -k3 -n
"""
import sys, torch
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
buf = torch.load(sys.argv[2]); gate = build_restorer(load_checkpoint(sys.argv[1]), sys.argv[1]).gate.eval()
if hasattr(gate, 'switch_fitted'): gate.switch_fitted.fill_(0)
val = torch.load(sys.argv[3])
def show(x, R, T, clean, tag):
    with torch.no_grad(): G = gate(x, R, T).clamp(-1, 1)
    p = lambda t: float(psnr_per_image((t.clamp(-1,1) + 1) / 2, (clean + 1) / 2)[0])
    print(tag, "bright %.3f  x %.2f R %.2f G %.2f" % (float((x+1).mean()/2), p(x), p(R), p(G)))
for s, d, deg, xu in buf:
    if deg != 'low_light': continue
    x = xu.float()[None] / 127.5 - 1; d = d.float()[None]
    T = x - d[:, 0:3]; R = T - d[:, 3:6]; clean = R + d[:, 6:9]
    show(x, R, T, clean, 'buf')
for r in val:
    if not r['deg'].startswith('low'): continue
    show(*(r[k][None]*2-1 for k in ('x','R','T','clean')), 'val')
