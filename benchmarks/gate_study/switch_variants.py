"""Switch variants refitted on a dump_buffer.py buffer (3 random draws of N restored images; the classifier on those and
the unrestored pool): trusts per label, with a trust in the input, linear in the input features; scored on
collect_val.py and collect_real.py tensors of the same restorer:

    python benchmarks/gate_study/switch_variants.py buffer.pt VAL.pt REAL.pt 84 [per]
"""
import sys, torch, collections, random
import torch.nn.functional as F
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.nn.fidelity import FidelityConfig, FidelityGate, switch_features, _fit_switch
torch.manual_seed(0)
dump = torch.load(sys.argv[1]); cfg = FidelityConfig(**dump['config'])
gate = FidelityGate(cfg); gate.load_state_dict(dump['gate']); gate.switch_fitted.fill_(0); gate.eval()
cls = cfg.switch_classes; floor = 4.0 * 10 ** (-dump['psnr_cap'] / 10)
def six(c, u, w):
    return torch.stack([(c*c).mean(), (c*w).mean(), (w*w).mean(), (u*u).mean(), (c*u).mean(), (u*w).mean()])
rows = []
with torch.no_grad():
    for (s, d) in dump['buffer']:
        s, d = s[None].float(), d[None].float()
        a, b = gate.gates_from(s)
        c = a*d[:, :3] + b*d[:, 3:6]; u = d[:, :3] + d[:, 3:6]; w = d[:, 6:]
        rows.append(six(c, u, w))
terms = torch.stack(rows); feats = torch.stack(dump['inputs']).float()
labels = torch.tensor([cls.index(l) if l in cls else -1 for l in dump['labels']])
pool_f = torch.stack([f for f, _ in dump['pool']]).float(); pool_l = torch.tensor([cls.index(l) if l in cls else -1 for _, l in dump['pool']])
print('restored', len(terms), 'pool', len(pool_f))
def evalset(path):
    out = []
    with torch.no_grad():
        for r in torch.load(path):
            x, R, T, cl = (r[k][None]*2-1 for k in ('x', 'R', 'T', 'clean'))
            a, b = gate.gates(x, R, T)
            out.append((r['deg'], switch_features(x)[0], six(a*(x-T)+b*(T-R), x-R, cl-R), r['name']))
    return out
val = evalset(sys.argv[2]); real = evalset(sys.argv[3])
def mse(t, s, k):
    c2, cw, w2, u2, cu, uw = t.unbind(-1); A = (1-k)*(1-s)
    return (A*A*c2 + k*k*u2 + w2 + 2*A*k*cu - 2*A*cw - 2*k*uw).clamp_min(0)
class Sw(torch.nn.Module):
    def __init__(s, nf, nl, keep, slopes):
        super().__init__(); s.keep, s.slopes = keep, slopes
        s.t = torch.nn.Parameter(torch.zeros(nl)); s.k = torch.nn.Parameter(torch.full((nl,), -2.0))
        s.bt = torch.nn.Parameter(torch.zeros(nl, nf)); s.bk = torch.nn.Parameter(torch.zeros(nl, nf))
    def forward(s, p, f):
        lt = s.t + (f @ s.bt.T if s.slopes else 0); lk = s.k + (f @ s.bk.T if s.slopes else 0)
        st = (p * torch.sigmoid(lt)).sum(1); kk = (p * torch.sigmoid(lk)).sum(1) if s.keep else torch.zeros_like(st)
        return st, kk
def run(train_idx, keep, slopes, wd, mean, std):
    # classifier as the stage does: on everything (restored train rows + pool), k-fold probs for trust rows
    f_all = torch.cat([feats[train_idx], pool_f]); l_all = torch.cat([labels[train_idx], pool_l])
    z = (f_all - mean) / std
    t3 = torch.cat([terms[train_idx][:, :3], torch.full((len(pool_f), 3), float('nan'))])
    _fit_switch(gate, z, l_all, t3, floor, 400, 5)  # fits classifier (and old trusts, unused)
    with torch.no_grad():
        # k-fold-like: reuse the held-out probabilities by refitting folds is costly; use the final classifier
        p = torch.softmax(gate.switch_classifier(z[:len(train_idx)]), 1)
    sw = Sw(z.shape[1], len(cls), keep, slopes)
    opt = torch.optim.Adam(sw.parameters(), lr=5e-2)
    zt = z[:len(train_idx)]; tt = terms[train_idx]
    for _ in range(400):
        st, kk = sw(p, zt)
        loss = torch.log(mse(tt, st, kk) + floor).mean() + wd * (sw.bt.square().sum() + sw.bk.square().sum())
        opt.zero_grad(); loss.backward(); opt.step()
    return sw
def score(sw, data, mean, std, per=False):
    g = collections.defaultdict(list)
    with torch.no_grad():
        for deg, f, t, name in data:
            z = ((f - mean) / std)[None]; p = torch.softmax(gate.switch_classifier(z), 1)
            st, kk = sw(p, z)
            gain = 10*torch.log10((t[3]-2*t[5]+t[2] + 0) / mse(t[None], st, kk))  # input mse = |u-w|^2
            g[deg].append(float(gain))
            if per and deg == 'real_noise': print('   ', name[:36], f"{float(gain):+.2f} s {float(st):.2f} k {float(kk):.2f}")
    return {k: sum(v)/len(v) for k, v in g.items()}
n = len(terms)
mean, std = torch.cat([feats, pool_f]).mean(0), torch.cat([feats, pool_f]).std(0).clamp_min(1e-3)
sub = int(sys.argv[4]) if len(sys.argv) > 4 else 84
for name, keep, slopes, wd in [('trust', 0, 0, 0), ('trust+keep', 1, 0, 0), ('slopes', 0, 1, 1e-2), ('slopes+keep', 1, 1, 1e-2), ('slopes+keep wd.1', 1, 1, 1e-1)]:
    res = []
    for rep in range(3):
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(rep))[:sub]
        sw = run(idx, keep, slopes, wd, mean, std)
        v, r = score(sw, val, mean, std), score(sw, real, mean, std, per=(rep == 0 and keep and len(sys.argv) > 5))
        res.append((v, r))
        print(f"{name:18s} rep{rep} val {sum(v.values())/len(v):+.2f} | " + ' '.join(f"{k[:5]} {x:+.2f}" for k, x in v.items())
              + ' || ' + ' '.join(f"{k} {x:+.2f}" for k, x in r.items()) + ' trust ' + ' '.join(f"{float(t):.2f}" for t in torch.sigmoid(sw.t)) + (' keep ' + ' '.join(f"{float(t):.2f}" for t in torch.sigmoid(sw.k)) if keep else ''), flush=True)
