"""The tenth round's check: a fitted gate with its standardised statistics clamped at 4, 3 or 2 (no refit), on
collect_val.py tensors of the same restorer.

    python benchmarks/gate_study/clamp_stats.py VAL.pt GATED.ckpt
"""
import sys, torch, collections
import rvar.nn.fidelity as fm
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
val = torch.load(sys.argv[1]); gate = build_restorer(load_checkpoint(sys.argv[2]), sys.argv[2]).gate.eval()
if hasattr(gate, 'switch_fitted'): gate.switch_fitted.fill_(0)
orig = fm.FidelityGate.gates_from
for C in (None, 4.0, 3.0, 2.0):
    def gates_from(self, st, C=C):
        stats = st.float()
        stats = (stats - self.feature_mean) / self.feature_std
        if C: stats = stats.clamp(-C, C)
        ab = torch.sigmoid(self.net(stats)); return ab[:, :1], ab[:, 1:]
    fm.FidelityGate.gates_from = gates_from
    per = collections.defaultdict(list)
    with torch.no_grad():
        for r in val:
            x, R, T = (r[k][None]*2-1 for k in ('x', 'R', 'T'))
            p = lambda t: float(psnr_per_image(((t.clamp(-1,1)+1)/2), r['clean'][None])[0])
            per[r['deg']].append(p(gate(x, R, T)) - p(x))
    vals = [v for l in per.values() for v in l]
    print(C, f"{sum(vals)/len(vals):+.2f} | " + ' '.join(f"{k[:6]} {sum(l)/len(l):+.2f}" for k, l in per.items()))
