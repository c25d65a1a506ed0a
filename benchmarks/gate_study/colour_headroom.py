"""Gains (and mean CIEDE2000) of candidate outputs built from collect_val.py tensors of a gated restorer: the input, the
restorer (R), the gated output (G), and brightness/colour mixes (L* the mean over RGB of one, C* the colour of
another: LGCT = G's brightness with the round trip's colour). Prints the switch's choice for real pairs.

    python benchmarks/gate_study/colour_headroom.py VAL.pt GATED.ckpt
"""
import sys, torch, collections
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image, ciede2000_per_image
rows = torch.load(sys.argv[1]); gate = build_restorer(load_checkpoint(sys.argv[2]), sys.argv[2]).gate.eval()
def luma(t): return t.mean(0, keepdim=True).expand_as(t)
def mix(l, c): return luma(l) + (c - luma(c))
per = collections.defaultdict(lambda: collections.defaultdict(list))
cls = gate.config.switch_classes
with torch.no_grad():
    for r in rows:
        x, R, T, cl = r['x'], r['R'], r['T'], r['clean']
        G = (gate(x[None]*2-1, R[None]*2-1, T[None]*2-1)[0].clamp(-1, 1) + 1) / 2
        st = gate.statistics(x[None]*2-1, R[None]*2-1, T[None]*2-1)
        s = float(gate.switch(st, x[None]*2-1)) if gate.has_switch else 0
        pr = torch.softmax(gate.switch_classifier(gate.switch_inputs(st, x[None]*2-1)), 1)[0]
        cands = dict(x=x, R=R, G=G, LxCR=mix(x, R), LGCR=mix(G, R), LGCT=mix(G, T), LGCx=mix(G, x))
        px = float(psnr_per_image(x[None], cl[None])[0])
        for k, v in cands.items():
            v = v.clamp(0, 1)[None]
            per[r['deg']]['p_'+k].append(float(psnr_per_image(v, cl[None])[0]) - px)
            per[r['deg']]['e_'+k].append(float(ciede2000_per_image(v, cl[None])[0]))
        if r['deg'].startswith('real') or len(sys.argv) > 3:
            print(r['name'][:40], r['deg'], f"px {px:.2f} G {per[r['deg']]['p_G'][-1]:+.2f} s {s:.2f}", cls[int(pr.argmax())], f"{float(pr.max()):.2f}")
keys = list(next(iter(per.values())).keys())
print('deg      ' + ' '.join(f'{k:>8s}' for k in keys))
for d, m in per.items():
    print(f'{d[:8]:8s} ' + ' '.join(f'{sum(v)/len(v):8.2f}' for v in m.values()))
