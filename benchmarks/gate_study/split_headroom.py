"""Headroom of a switch with separate trusts for brightness and colour: on collect_val.py tensors of a gated
restorer, each label's trusts (s in the restorer, kappa in the input) chosen on the photos themselves with the true
label (an oracle: an upper bound, not a result), once shared by brightness and colour and once apart. Prints the
PSNR gain over the input and the mean CIEDE2000 per degradation of: the input, the gate without its switch, the
gate with its fitted switch, the shared oracle and the split oracle.

    python benchmarks/gate_study/split_headroom.py GATED.ckpt VAL.pt
"""
import sys, collections
import torch
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.nn.fidelity import blend
from rvar.eval.metrics import psnr_per_image, ciede2000_per_image

gate = build_restorer(load_checkpoint(sys.argv[1]), sys.argv[1]).gate.eval()
rows = torch.load(sys.argv[2])
floor = 4.0 * 10.0 ** (-40 / 10.0)
grid = torch.linspace(0, 1, 11)


def luma(t):
    return t.mean(1, keepdim=True).expand_as(t)


parts = collections.defaultdict(list)  # label -> [(x, clean, R, cL, cC, uL, uC, G)]
with torch.no_grad():
    for r in rows:
        x, R, T, cl = (r[k][None] * 2 - 1 for k in ("x", "R", "T", "clean"))
        G = gate(x, R, T)
        fitted = gate.switch_fitted.clone()
        gate.switch_fitted.fill_(0)
        a, b = gate.gates(x, R, T)
        G0 = gate(x, R, T)
        gate.switch_fitted.copy_(fitted)
        c = blend(a, x - T) + blend(b, T - R)
        u = x - R
        parts[r["deg"]].append((x, cl, R, luma(c), c - luma(c), luma(u), u - luma(u), G, G0))


def output(p, sL, kL, sC, kC):
    x, cl, R, cL, cC, uL, uC = p[:7]
    return R + (1 - kL) * (1 - sL) * cL + kL * uL + (1 - kC) * (1 - sC) * cC + kC * uC


def score(outs, ps):
    g, e = [], []
    for o, p in zip(outs, ps):
        o01, x01, c01 = ((t.clamp(-1, 1) + 1) / 2 for t in (o, p[0], p[1]))
        g.append(float(psnr_per_image(o01, c01)[0] - psnr_per_image(x01, c01)[0]))
        e.append(float(ciede2000_per_image(o01, c01)[0]))
    return sum(g) / len(g), sum(e) / len(e)


def objective(ps, sL, kL, sC, kC):
    return sum(float(torch.log(((output(p, sL, kL, sC, kC) - p[1]) ** 2).mean() + floor)) for p in ps)


print(f"{'':10s} {'input':>12s} {'gates':>12s} {'switch':>12s} {'shared':>12s} {'split':>12s}   shared(s,k) split(sL,kL,sC,kC)")
for label, ps in parts.items():
    best_shared = min(((s, k) for s in grid for k in grid), key=lambda sk: objective(ps, sk[0], sk[1], sk[0], sk[1]))
    sL, kL = best_shared
    # coordinate search from the shared optimum (the 4-d grid is 14641 evaluations per label)
    q = [sL, kL, sL, kL]
    for _ in range(3):
        for i in range(4):
            q[i] = min(grid, key=lambda v: objective(ps, *(q[:i] + [v] + q[i + 1:])))
    inp = score([p[0] for p in ps], ps)
    cols = [inp, score([p[8] for p in ps], ps), score([p[7] for p in ps], ps),
            score([output(p, sL, kL, sL, kL) for p in ps], ps), score([output(p, *q) for p in ps], ps)]
    print(f"{label[:10]:10s} " + " ".join(f"{g:+5.2f} ({e:4.1f})" for g, e in cols)
          + f"   ({float(sL):.1f},{float(kL):.1f}) ({','.join(f'{float(v):.1f}' for v in q)})")
