"""The tenth round's prototype of an image-level switch between a restorer's output R and its fitted gate's output
G: fitted on collect_buffer.py entries (images A to N), scored on collect_val.py tensors of the same restorer.
Prints G alone, R alone, a switch on the image statistics (linear, hidden 4), the switch by the true label (each
label's choice made on the buffer) and by the label a classifier trained on the buffer predicts.

    python benchmarks/gate_study/label_switch.py BUFFER.pt VAL.pt GATED.ckpt [A:N]

LIN=1 makes the classifier linear; IDX=2,3,4 picks the whole-image statistics it reads (default all nine).
"""
import os, sys, torch, collections
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
torch.manual_seed(0)
buf, val = torch.load(sys.argv[1]), torch.load(sys.argv[2])
gate = build_restorer(load_checkpoint(sys.argv[3]), sys.argv[3]).gate.eval()
A, N = (int(v) for v in sys.argv[4].split(":")) if len(sys.argv) > 4 else (0, len(buf))
def rows_buf():
    for s, d, deg, xu in buf[A:N]:
        x = xu.float() / 127.5 - 1; d = d.float()
        T = x - d[0:3]; R = T - d[3:6]; clean = R + d[6:9]
        yield x, R, T, clean, deg
def rows_val():
    for r in val:
        yield r['x']*2-1, r['R']*2-1, r['T']*2-1, r['clean']*2-1, r['deg']
def prep(rows):
    out = []
    with torch.no_grad():
        for x, R, T, clean, deg in rows:
            x, R, T, clean = (t[None].float() for t in (x, R, T, clean))
            G = gate(x, R, T)
            st = gate.statistics(x, R, T)[0]
            z = torch.cat([st[6:, 0, 0], st[:6].mean((1, 2))])
            out.append((z, R.clamp(-1, 1), G.clamp(-1, 1), x, clean, deg))
    return out
B, V = prep(rows_buf()), prep(rows_val())
floor = 4.0 * 10 ** (-40 / 10)
def mse(a, b): return (a - b).square().mean()
Zb = torch.stack([r[0] for r in B]); mu, sd = Zb.mean(0), Zb.std(0).clamp_min(1e-3)
def fit(hidden, epochs=400, lr=3e-2):
    torch.manual_seed(0)
    F = Zb.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(F, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)) if hidden else torch.nn.Linear(F, 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-3)
    mR = torch.stack([mse(r[1], r[4]) for r in B]); mG = torch.stack([mse(r[2], r[4]) for r in B])
    # exact per-image MSE of s R + (1-s) G needs the cross term
    mRG = torch.stack([((r[1]-r[4])*(r[2]-r[4])).mean() for r in B])
    z = (Zb - mu) / sd
    for _ in range(epochs):
        s = torch.sigmoid(net(z)).squeeze(1)
        m = s*s*mR + (1-s)*(1-s)*mG + 2*s*(1-s)*mRG
        loss = torch.log(m + floor).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    return net
def score(rows, chooser):
    """Mean gain over the inputs of s R + (1 - s) G, s = chooser(i, z, deg) for row i, and per degradation."""
    per = collections.defaultdict(list)
    for i, (z, R, G, x, clean, deg) in enumerate(rows):
        s = chooser(i, z, deg)
        out = s * R + (1 - s) * G
        p = lambda t: float(psnr_per_image((t + 1) / 2, (clean + 1) / 2)[0])
        per[deg].append(p(out) - p(x))
    allv = [v for l in per.values() for v in l]
    return f"{sum(allv)/len(allv):+.2f} | " + ' '.join(f"{k[:6]} {sum(l)/len(l):+.2f}" for k, l in per.items())
print("buffer", len(B), collections.Counter(r[5] for r in B))
print("val G only  ", score(V, lambda i, z, d: 0.0))
print("val R only  ", score(V, lambda i, z, d: 1.0))
for h in (0, 4):
    net = fit(h)
    with torch.no_grad():
        ch = lambda i, z, d: float(torch.sigmoid(net(((z - mu) / sd)[None]))[0, 0])
        print(f"switch h{h} buf", score(B, ch)); print(f"switch h{h} val", score(V, ch))
# per-degradation label switch (upper bound on what a classifier could give)
lab = collections.defaultdict(lambda: [0.0, 0.0])
for z, R, G, x, clean, deg in B:
    lab[deg][0] += float(torch.log(mse(R, clean) + floor)); lab[deg][1] += float(torch.log(mse(G, clean) + floor))
pick = {k: 1.0 if v[0] < v[1] else 0.0 for k, v in lab.items()}
print("label switch", pick); print("label val", score(V, lambda i, z, d: pick.get(d.split(':')[0], 0.0)))
# --- a degradation classifier on the buffer's labels, then the label switch on its predictions
names = sorted(pick)
LIN = os.environ.get("LIN") == "1"; idx = [int(v) for v in os.environ.get("IDX", "0,1,2,3,4,5,6,7,8").split(",")]
def clf_fit(Z, y, epochs=600):
    torch.manual_seed(0)
    net = torch.nn.Linear(len(idx), len(names)) if LIN else torch.nn.Sequential(torch.nn.Linear(len(idx), 16), torch.nn.Tanh(), torch.nn.Linear(16, len(names)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(net(Z), y); opt.zero_grad(); loss.backward(); opt.step()
    return net
yb = torch.tensor([names.index(r[5]) for r in B])
net = clf_fit(((Zb - mu) / sd)[:, idx], yb)
Zv = torch.stack([r[0] for r in V]); yv = [r[5].split(':')[0] for r in V]
with torch.no_grad():
    pv = net(((Zv - mu) / sd)[:, idx]).argmax(1)
acc = sum(names[p] == t for p, t in zip(pv.tolist(), yv)) / len(yv)
print("classifier val accuracy %.2f" % acc, collections.Counter((t, names[p]) for p, t in zip(pv.tolist(), yv) if names[p] != t).most_common(8))
print("predicted-label switch val", score(V, lambda i, z, d: pick[names[pv[i]]]))
