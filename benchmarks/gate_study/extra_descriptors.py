"""Three more whole-image descriptors tried as gate statistics (sharpness: log median |Laplacian| - log median
|gradient|, the same with means; anisotropy: |log mean|dx| / mean|dy||), appended to the standardised gate's and
fitted as fit_stream.py fits (96 images, 4 draws, 8 or 16 updates per batch). They did not keep motion blur within
0.8 dB on the validation photos; not adopted (BENCHMARKS.md, sixth round).

    python benchmarks/gate_study/extra_descriptors.py BUFFER.pt VAL.pt "0,2"     # which descriptors; "" none
"""
import sys, random, collections
import torch
def extra(x):  # x (B,3,H,W) in [-1,1]
    u = (x.float()+1)/2; g = u.mean(1, keepdim=True)
    lap = (g[..., :-2, 1:-1] + g[..., 2:, 1:-1] + g[..., 1:-1, :-2] + g[..., 1:-1, 2:] - 4*g[..., 1:-1, 1:-1]).abs().flatten(1)
    dx = (g[..., :, 1:] - g[..., :, :-1]).abs(); dy = (g[..., 1:, :] - g[..., :-1, :]).abs()
    grad = (dx[..., 1:, :] + dy[..., :, 1:]).flatten(1)
    sharp = torch.log(lap.median(1).values + 1e-3) - torch.log(grad.median(1).values + 1e-3)
    sharp2 = torch.log(lap.mean(1) + 1e-3) - torch.log(grad.mean(1) + 1e-3)
    aniso = torch.log((dx.mean((1,2,3)) + 1e-3) / (dy.mean((1,2,3)) + 1e-3)).abs()
    return torch.stack([sharp, sharp2, aniso], 1)
from rvar.nn.fidelity import FidelityGate, FidelityConfig
from rvar.eval.metrics import psnr_per_image
mix = torch.load(sys.argv[1]); val = torch.load(sys.argv[2])
which = [int(c) for c in sys.argv[3].split(',')] if len(sys.argv) > 3 and sys.argv[3] else []
def add(stats, x):
    if not which: return stats
    e = extra(x)[:, which]
    return torch.cat([stats, e.view(e.shape[0], -1, 1, 1).expand(-1, -1, *stats.shape[-2:]).to(stats.dtype)], 1)
entries = [(add(s[None].float(), x[None].float()/127.5-1)[0].half(), d, deg) for s, d, deg, x in mix]
base = FidelityConfig(hidden=0, image_stats=True, standardise=True)
def make(hidden=0):
    g = FidelityGate(FidelityConfig(hidden=hidden, image_stats=True, standardise=True)); n = base.features + len(which)
    layers = ([torch.nn.Conv2d(n, hidden, 1), torch.nn.GELU(), torch.nn.Conv2d(hidden, 2, 1)] if hidden else [torch.nn.Conv2d(n, 2, 1)])
    g.net = torch.nn.Sequential(*layers); torch.nn.init.zeros_(g.net[-1].weight)
    with torch.no_grad(): g.net[-1].bias.copy_(torch.tensor([0.0, -4.0]))
    g.feature_mean = torch.zeros(1, n, 1, 1); g.feature_std = torch.ones(1, n, 1, 1)
    return g, n
def fit(ents, seed, ups=8, hidden=0, cap=40.0):
    random.seed(seed); torch.manual_seed(seed)
    g, n = make(hidden); opt = torch.optim.AdamW(g.parameters(), lr=1e-2, weight_decay=0.0); buffer = []; done = False
    for k in range(0, len(ents), 4):
        buffer += ents[k:k+4]; del buffer[:max(len(buffer)-128, 0)]
        if not done:
            if len(buffer) < 16: continue
            g.set_standardisation(torch.stack([s for s, _, _ in buffer])); done = True
        for _ in range(ups):
            crops = []
            for s, d, _ in random.sample(buffer, min(16, len(buffer))):
                y0, x0 = random.randint(0, s.shape[-2]-128), random.randint(0, s.shape[-1]-128)
                crops.append(torch.cat([t[:, y0:y0+128, x0:x0+128] for t in (s, d)]))
            both = torch.stack(crops).float()
            a, b = g.gates_from(both[:, :n])
            err = a*both[:, n:n+3] + b*both[:, n+3:n+6] - both[:, n+6:]
            loss = torch.log(err.square().mean((1,2,3)) + 4.0 * 10 ** (-cap / 10)).mean()
            opt.zero_grad(); loss.backward(); opt.step()
    return g
def score(g):
    per = collections.defaultdict(list)
    with torch.no_grad():
        for r in val:
            x, R, T = (r[k][None]*2-1 for k in ('x', 'R', 'T'))
            a, b = g.gates_from(add(g.statistics(x, R, T), x)); out = R + a*(x-T) + b*(T-R)
            p = lambda t: float(psnr_per_image(((t.clamp(-1,1)+1)/2), r['clean'][None])[0])
            per[r['deg']].append(p(out) - p(x))
    return {k: sum(v)/len(v) for k, v in per.items()}
for name, kw in [('lin', {}), ('ups16', dict(ups=16))]:
    ms = [score(fit(random.Random(seed).sample(entries, 96), seed, **kw)) for seed in range(4)]
    avg = {k: sum(m[k] for m in ms)/len(ms) for k in ms[0]}
    print(f"== extra{which} {name:6s} mean {sum(avg.values())/7:+.2f} (seeds {' '.join(f'{sum(m.values())/7:+.2f}' for m in ms)}) worst {min(avg.values()):+.2f} | " + ' '.join(f"{k[:5]} {v:+.2f}" for k, v in avg.items()), flush=True)
