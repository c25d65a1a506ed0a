"""PSNR gain over the input and mean CIEDE2000 (input > gated output) per degradation of a gated restorer's gate on
collect_val.py / collect_real.py tensors of the same restorer:

    python benchmarks/gate_study/score_colour.py GATED.ckpt VAL.pt [REAL.pt ...]
"""
import sys, torch, collections
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image, ciede2000_per_image
gate = build_restorer(load_checkpoint(sys.argv[1]), sys.argv[1]).gate.eval()
for path in sys.argv[2:]:
    per = collections.defaultdict(lambda: [[], [], []])
    with torch.no_grad():
        for r in torch.load(path):
            x, R, T = (r[k][None]*2-1 for k in ('x', 'R', 'T'))
            G = (gate(x, R, T).clamp(-1, 1) + 1) / 2; cl = r['clean'][None]
            px = float(psnr_per_image(r['x'][None], cl)[0])
            per[r['deg']][0].append(float(psnr_per_image(G, cl)[0]) - px)
            per[r['deg']][1].append(float(ciede2000_per_image(r['x'][None], cl)[0]))
            per[r['deg']][2].append(float(ciede2000_per_image(G, cl)[0]))
    m = lambda l: sum(l) / len(l)
    allg = [v for k in per for v in per[k][0]]
    print(f"{sys.argv[1].split('/')[-1][:10]:10s} {path.split('/')[-1][:6]} {m(allg):+.2f} | " + ' '.join(f"{k[:5]} {m(l[0]):+.2f} ({m(l[1]):.1f}>{m(l[2]):.1f})" for k, l in per.items()))
