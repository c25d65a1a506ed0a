"""Ungated and gated gains of a gated restorer on collect_val.py tensors (which must come from the same restorer),
per degradation, mean over the photos:

    python benchmarks/gate_study/score_val.py VAL.pt GATED.ckpt

NOSWITCH=1 scores the gate without its image switch (FidelityConfig.switch_classes), if it has one.
"""
import os, sys, torch, collections
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
val = torch.load(sys.argv[1]); gate = build_restorer(load_checkpoint(sys.argv[2]), sys.argv[2]).gate.eval() if len(sys.argv) > 2 else None
if gate is not None and os.environ.get('NOSWITCH') == '1' and hasattr(gate, 'switch_fitted'):
    gate.switch_fitted.fill_(0.0)
per = collections.defaultdict(lambda: [[], []])
with torch.no_grad():
    for r in val:
        x, R, T = (r[k][None]*2-1 for k in ('x', 'R', 'T'))
        p = lambda t: float(psnr_per_image(((t.clamp(-1,1)+1)/2), r['clean'][None])[0])
        px = p(x)
        per[r['deg']][0].append(p(R) - px)
        if gate is not None: per[r['deg']][1].append(p(gate(x, R, T)) - px)
for i, name in enumerate(['ungated', 'gated']):
    vals = [v for k in per for v in per[k][i]]
    if not vals: continue
    print(f"{name:8s} {sum(vals)/len(vals):+.2f} | " + ' '.join(f"{k[:6]} {sum(l[i])/len(l[i]):+.2f}" for k, l in per.items()))
