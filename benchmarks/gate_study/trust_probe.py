"""How much a gated restorer's fitted switch decides per degradation: each label's trust in the restorer forced to
0 and to 1 in turn (the rest as fitted), scored on collect_val.py tensors of the same restorer:

    python benchmarks/gate_study/trust_probe.py GATED.ckpt VAL.pt
"""
import sys, torch, collections
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
ckpt, val = sys.argv[1], sys.argv[2]
gate = build_restorer(load_checkpoint(ckpt), ckpt).gate.eval()
classes = gate.config.switch_classes
rows = torch.load(val)
orig = gate.switch_trust.detach().clone()
def score(label, value):
    with torch.no_grad():
        gate.switch_trust.copy_(orig)
        if label is not None: gate.switch_trust[classes.index(label)] = value
        per = collections.defaultdict(list)
        for r in rows:
            x, R, T = (r[k][None]*2-1 for k in ('x', 'R', 'T'))
            G = (gate(x, R, T).clamp(-1, 1) + 1) / 2; cl = r['clean'][None]
            per[r['deg']].append(float(psnr_per_image(G, cl)[0]) - float(psnr_per_image(r['x'][None], cl)[0]))
    return {k: sum(v)/len(v) for k, v in per.items()}
base = score(None, 0)
print(ckpt.split('/')[-2], 'fitted trusts', ' '.join(f"{c[:5]} {float(t):.2f}" for c, t in zip(classes, torch.sigmoid(orig))))
for lab, deg in (('low_light','low_light'), ('snow','snow'), ('rain','rain'), ('haze','haze')):
    s0, s1 = score(lab, -10.0)[deg], score(lab, 10.0)[deg]
    print(f"  {deg:10s} fitted {base[deg]:+.2f}  trust 0: {s0:+.2f}  trust 1: {s1:+.2f}")
