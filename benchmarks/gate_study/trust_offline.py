"""The switch's per-label trusts fitted offline (fit_switch's objective, the gated restorer's classifier) on
collect_val.py tensors, e.g. of training photos at the evaluation's strengths (SPLIT=... collect_val.py), with each
label's mean PSNR gated (G) and ungated (R):

    python benchmarks/gate_study/trust_offline.py TRAIN.pt GATED.ckpt
"""
import sys, torch, collections, copy
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.nn.fidelity import switch_features
rows = torch.load(sys.argv[1]); gate = build_restorer(load_checkpoint(sys.argv[2]), sys.argv[2]).gate.eval()
cls = gate.config.switch_classes
gate.switch_fitted.fill_(0)
T3, P, L = [], [], []
with torch.no_grad():
    for r in rows:
        x, R, T, cl = (r[k][None]*2-1 for k in ('x', 'R', 'T', 'clean'))
        a, b = gate.gates(x, R, T)
        c = a*(x-T) + b*(T-R); w = cl - R
        T3.append(torch.stack([(c*c).mean(), (c*w).mean(), (w*w).mean()]))
        P.append(torch.softmax(gate.switch_classifier((switch_features(x) - gate.switch_mean)/gate.switch_std), 1)[0])
        L.append(r['deg'])
T3, P = torch.stack(T3), torch.stack(P)
floor = 4.0 * 10 ** (-4.0)
by = collections.defaultdict(list)
for i, l in enumerate(L): by[l].append(i)
for l, idx in by.items():
    c2, cw, w2 = T3[idx].unbind(1)
    g = (10*torch.log10(4/(c2-2*cw+w2+floor))).mean(); r_ = (10*torch.log10(4/(w2+floor))).mean()
    print(f"{l:15s} G {g:.2f} R {r_:.2f}  mean probs " + ' '.join(f"{c[:4]} {p:.2f}" for c, p in zip(cls, P[idx].mean(0))))
logit = torch.zeros(len(cls), requires_grad=True); opt = torch.optim.Adam([logit], lr=5e-2)
c2, cw, w2 = T3.unbind(1)
for _ in range(400):
    keep = 1 - P @ torch.sigmoid(logit)
    loss = torch.log((keep*keep*c2 - 2*keep*cw + w2).clamp_min(0) + floor).mean()
    opt.zero_grad(); loss.backward(); opt.step()
print('trust', ' '.join(f"{c} {float(t):.2f}" for c, t in zip(cls, torch.sigmoid(logit))))
