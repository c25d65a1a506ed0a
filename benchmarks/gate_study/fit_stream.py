"""Fit fidelity gates on collect_buffer.py's entries as the fidelity stage does (a stream of batches of 4 into a
buffer of 128, 8 updates of 16 random 128 px crops per batch, AdamW lr 1e-2, log-MSE capped at 40 dB) and score
them, the ungated restorer and GATED.ckpt's own gate on collect_val.py's tensors, per degradation. EXPERIMENT:
base (raw statistics, 96/240/480 images, 3 draws), norm (standardised from the first 16 images; + lr, epochs,
hidden 8), grid (standardised, 96 images, 4 draws: caps, updates, hidden 4), small (128 px entries), none.

    python benchmarks/gate_study/fit_stream.py BUFFER.pt VAL.pt [GATED.ckpt|""] EXPERIMENT
"""
"""Stream-fit FidelityGates on collected buffer entries as the fidelity stage does; score on val tensors."""
import sys, random, collections, torch, itertools
from rvar.nn.fidelity import FidelityGate, FidelityConfig
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
mix = [e[:3] for e in torch.load(sys.argv[1])]; val = torch.load(sys.argv[2]); shipped = sys.argv[3] if len(sys.argv) > 3 else None
CAP = 40.0
def log_mse(mse, cap=CAP): return torch.log(mse + 4.0 * 10 ** (-cap / 10)).mean()
class Norm(torch.nn.Module):
    def __init__(s, g, mu, sd): super().__init__(); s.g, s.mu, s.sd = g, mu, sd
    def gates_from(s, st): return s.g.gates_from((st.float() - s.mu) / s.sd)
    def forward(s, x, R, T):
        a, b = s.gates_from(s.g.statistics(x, R, T)); return R + a*(x-T) + b*(T-R)
    def parameters(s): return s.g.parameters()
def fit(entries, cfg, ups=8, ub=16, buf=128, crop=128, lr=1e-2, seed=0, cap=CAP, wd=0.0, epochs=1, norm=False):
    random.seed(seed); torch.manual_seed(seed)
    g = FidelityGate(cfg)
    if norm:
        st = torch.stack([e[0] for e in entries[:norm]]).float().transpose(0, 1).flatten(1)
        g = Norm(g, st.mean(1).view(1, -1, 1, 1), st.std(1).clamp_min(1e-3).view(1, -1, 1, 1))
    opt = torch.optim.AdamW(list(g.parameters()), lr=lr, weight_decay=wd)
    n = cfg.features; buffer = []
    stream = entries * epochs
    for k in range(0, len(stream), 4):
        buffer += stream[k:k+4]; del buffer[:max(len(buffer)-buf, 0)]
        for _ in range(ups):
            draw = random.sample(buffer, min(ub, len(buffer)))
            crops = []
            for s, d, _ in draw:
                y0, x0 = random.randint(0, s.shape[-2]-crop), random.randint(0, s.shape[-1]-crop)
                crops.append(torch.cat([t[:, y0:y0+crop, x0:x0+crop] for t in (s, d)]))
            both = torch.stack(crops).float()
            a, b = g.gates_from(both[:, :n])
            err = a*both[:, n:n+3] + b*both[:, n+3:n+6] - both[:, n+6:]
            loss = log_mse(err.square().mean((1,2,3)), cap)
            opt.zero_grad(); loss.backward(); opt.step()
    return g
def score(g, name):
    per = collections.defaultdict(list)
    with torch.no_grad():
        for r in val:
            x, R, T = (r[k][None]*2-1 for k in ('x', 'R', 'T'))
            out = R if g is None else (x if g == 'x' else g(x, R, T))
            out = ((out.clamp(-1,1)+1)/2)
            p = lambda t: float(psnr_per_image(t.clamp(0,1), r['clean'][None])[0])
            per[r['deg']].append(p(out) - p(r['x'][None]))
    allg = [v for l in per.values() for v in l]
    m = sum(allg)/len(allg)
    print(f"{name:34s} {m:+.2f} | " + ' '.join(f"{k[:5]} {sum(v)/len(v):+.2f}" for k, v in per.items()), flush=True)
    return m, {k: sum(v)/len(v) for k, v in per.items()}
score(None, 'ungated')
_, dr = score(None, 'ungated'); 
if shipped:
    score(build_restorer(load_checkpoint(shipped), shipped).gate.eval(), 'shipped gate')
exp = sys.argv[4] if len(sys.argv) > 4 else 'base'
base = FidelityConfig(hidden=0, image_stats=True)
if exp == 'base':
    for n in (96, 240, 480):
        for seed in range(3):
            score(fit(mix[:n] if seed == 0 else random.Random(seed).sample(mix, n), base, seed=seed), f'n{n} seed{seed}')
elif exp == 'variants':
    for name, kw, cfg in [('h8', {}, FidelityConfig(hidden=8, image_stats=True)),
                          ('lr3e-3', dict(lr=3e-3), base), ('cap34', dict(cap=34), base),
                          ('ups16', dict(ups=16), base), ('epochs3', dict(epochs=3), base)]:
        for n in (96, 480):
            for seed in range(2):
                score(fit(random.Random(seed).sample(mix, n), cfg, seed=seed, **kw), f'{name} n{n} seed{seed}')
elif exp == 'small':
    for n in (240, 480, 960):
        for seed in range(3):
            score(fit(random.Random(seed).sample(mix, n), base, seed=seed), f'128px n{n} seed{seed}')
elif exp == 'norm':
    for name, kw, cfg in [('norm', dict(norm=16), base), ('norm lr3e-2', dict(norm=16, lr=3e-2), base), ('norm ep3', dict(norm=16, epochs=3), base),
                          ('norm h8', dict(norm=16), FidelityConfig(hidden=8, image_stats=True))]:
        for n in (96, 480):
            for seed in range(3):
                score(fit(random.Random(seed).sample(mix, n), cfg, seed=seed, **kw), f'{name} n{n} seed{seed}')
elif exp == 'grid':
    for name, kw, cfg in [('norm', dict(norm=16), base), ('cap45', dict(norm=16, cap=45), base), ('cap50', dict(norm=16, cap=50), base),
                          ('ups16', dict(norm=16, ups=16), base), ('h4', dict(norm=16), FidelityConfig(hidden=4, image_stats=True)),
                          ('lr3e-3', dict(norm=16, lr=3e-3), base)]:
        ms = []
        for seed in range(4):
            ms.append(score(fit(random.Random(seed).sample(mix, 96), cfg, seed=seed, **kw), f'{name} n96 seed{seed}')[1])
        avg = {k: sum(m[k] for m in ms)/len(ms) for k in ms[0]}
        print(f"== {name:10s} mean {sum(avg.values())/7:+.2f} worst {min(avg.values()):+.2f} | " + ' '.join(f"{k[:5]} {v:+.2f}" for k, v in avg.items()), flush=True)
elif exp == 'hidden':  # the seventh round: hidden layers on the standardised statistics, 6 draws each
    for name, kw, cfg in [('linear', dict(norm=16), base),
                          ('h2', dict(norm=16), FidelityConfig(hidden=2, image_stats=True)),
                          ('h4', dict(norm=16), FidelityConfig(hidden=4, image_stats=True)),
                          ('h8', dict(norm=16), FidelityConfig(hidden=8, image_stats=True)),
                          ('h16', dict(norm=16), FidelityConfig(hidden=16, image_stats=True)),
                          ('h4 ups16', dict(norm=16, ups=16), FidelityConfig(hidden=4, image_stats=True)),
                          ('h8 ups16', dict(norm=16, ups=16), FidelityConfig(hidden=8, image_stats=True))]:
        ms = []
        for seed in range(6):
            ms.append(score(fit(random.Random(seed).sample(mix, 96), cfg, seed=seed, **kw), f'{name} n96 seed{seed}')[1])
        avg = {k: sum(m[k] for m in ms)/len(ms) for k in ms[0]}
        means = [sum(m.values())/len(m) for m in ms]
        print(f"== {name:10s} mean {sum(avg.values())/7:+.2f} (draws {min(means):+.2f}..{max(means):+.2f}) worst "
              f"{min(avg.values()):+.2f} | " + ' '.join(f"{k[:5]} {v:+.2f}" for k, v in avg.items()), flush=True)
elif exp == 'images':  # the seventh round: how many restored images the stage needs (refits of 11 s saw 36 to 40)
    for n in (40, 64, 96):
        for name, kw, cfg in [('linear', dict(norm=16), base), ('h4', dict(norm=16), FidelityConfig(hidden=4, image_stats=True))]:
            ms = []
            for seed in range(4):
                ms.append(score(fit(random.Random(seed).sample(mix, n), cfg, seed=seed, **kw), f'{name} n{n} seed{seed}')[1])
            avg = {k: sum(m[k] for m in ms)/len(ms) for k in ms[0]}
            means = [sum(m.values())/len(m) for m in ms]
            print(f"== {name:6s} n{n:<3d} mean {sum(avg.values())/7:+.2f} (draws {min(means):+.2f}..{max(means):+.2f}) worst "
                  f"{min(avg.values()):+.2f} | " + ' '.join(f"{k[:5]} {v:+.2f}" for k, v in avg.items()), flush=True)
