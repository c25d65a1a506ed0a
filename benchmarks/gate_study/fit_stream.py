"""Fit fidelity gates on collect_buffer.py's entries as the fidelity stage does (a stream of batches of 4 into a
buffer of 128, 8 updates of 16 random 128 px crops per batch, AdamW lr 1e-2, log-MSE capped at 40 dB) and score
them, the ungated restorer and GATED.ckpt's own gate on collect_val.py's tensors, per degradation. EXPERIMENT:
base (raw statistics, 96/240/480 images, 3 draws), norm (standardised from the first 16 images; + lr, epochs,
hidden 8), grid (standardised, 96 images, 4 draws: caps, updates, hidden 4), small (128 px entries), none.

    python benchmarks/gate_study/fit_stream.py BUFFER.pt VAL.pt [GATED.ckpt|""] EXPERIMENT

WAIT=16 makes no update until 16 images are buffered, as the stage; IMAGES=84 sets select's draw size; UPS=4
sets the updates per batch of 4 (8, as the stage).
REAL=collect_real.py's OUT.pt also scores each gate on real pairs (their own columns, real_noise and real_rain,
outside the synthetic mean). Experiment dark (the eighth round): BUFFER.pt's stream against BUFFER2=another
buffer's (e.g. collected with AUGMENT=exposure), and clean-sample weights.
"""
"""Stream-fit FidelityGates on collected buffer entries as the fidelity stage does; score on val tensors."""
import os, sys, random, collections, torch, itertools
from rvar.nn.fidelity import FidelityGate, FidelityConfig
from rvar.nn.checkpoints import load_checkpoint, build_restorer
from rvar.eval.metrics import psnr_per_image
mix = [e[:3] for e in torch.load(sys.argv[1])]; val = torch.load(sys.argv[2]); shipped = sys.argv[3] if len(sys.argv) > 3 else None
val += torch.load(os.environ['REAL']) if os.environ.get('REAL') else []
CAP = 40.0
def log_mse(mse, cap=CAP): return torch.log(mse + 4.0 * 10 ** (-cap / 10)).mean()
CLIP = {'mode': None, 'at': 3.0}  # how standardised statistics are bounded (the eighth round's clip experiment)
def bound(z):
    if CLIP['mode'] == 'clamp': return z.clamp(-CLIP['at'], CLIP['at'])
    if CLIP['mode'] == 'tanh': return CLIP['at'] * torch.tanh(z / CLIP['at'])
    return z
class Norm(torch.nn.Module):
    def __init__(s, g, mu, sd): super().__init__(); s.g, s.mu, s.sd = g, mu, sd
    def gates_from(s, st): return s.g.gates_from(bound((st.float() - s.mu) / s.sd))
    def forward(s, x, R, T):
        a, b = s.gates_from(s.g.statistics(x, R, T)); return R + a*(x-T) + b*(T-R)
    def parameters(s): return s.g.parameters()
class Ensemble(torch.nn.Module):  # the mean of several gates' (a, b)
    def __init__(s, gates): super().__init__(); s.gates = torch.nn.ModuleList(gates)
    def gates_from(s, st):
        ab = [g.gates_from(st) for g in s.gates]
        return sum(a for a, _ in ab) / len(ab), sum(b for _, b in ab) / len(ab)
    def forward(s, x, R, T):
        a, b = s.gates_from(s.gates[0].g.statistics(x, R, T)); return R + a*(x-T) + b*(T-R)
def fit(entries, cfg, ups=8, ub=16, buf=128, crop=128, lr=1e-2, seed=0, cap=CAP, wd=0.0, epochs=1, norm=False,
        ensemble=1, average=False, chunk=4, init_seed=None):
    if ensemble > 1:
        return Ensemble([fit(entries, cfg, ups, ub, buf, crop, lr, seed * 100 + k, cap, wd, epochs, norm, 1, average)
                         for k in range(ensemble)])
    random.seed(seed); torch.manual_seed(seed if init_seed is None else init_seed)
    g = FidelityGate(cfg)
    if norm:
        st = torch.cat([e[0].float().flatten(1) for e in entries[:norm]], 1)  # (F, pixels of those images)
        g = Norm(g, st.mean(1).view(1, -1, 1, 1), st.std(1).clamp_min(1e-3).view(1, -1, 1, 1))
    opt = torch.optim.AdamW(list(g.parameters()), lr=lr, weight_decay=wd)
    n = cfg.features; buffer = []
    stream = entries * epochs
    avg_n, avg_p = 0, None
    for k in range(0, len(stream), chunk):
        buffer += stream[k:k+chunk]; del buffer[:max(len(buffer)-buf, 0)]
        if os.environ.get('WAIT') and len(buffer) < int(os.environ['WAIT']):
            continue  # as the stage: no update until WAIT images are buffered
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
            if average and k >= len(stream) // 2:  # the mean of the weights over the second half's updates
                avg_n += 1
                params = [p.detach().clone() for p in g.parameters()]
                avg_p = params if avg_n == 1 else [a + (p - a) / avg_n for a, p in zip(avg_p, params)]
    if average:
        with torch.no_grad():
            for p, a in zip(g.parameters(), avg_p): p.copy_(a)
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
    allg = [v for k, l in per.items() if not k.startswith('real_') for v in l]
    m = sum(allg)/len(allg)
    print(f"{name:34s} {m:+.2f} | " + ' '.join(f"{k[:5]} {sum(v)/len(v):+.2f}" for k, v in per.items()), flush=True)
    return m, {k: sum(v)/len(v) for k, v in per.items()}
def summary(tag, ms):  # the eighth round's experiments: mean over draws, synthetic degradations apart from real pairs
    avg = {k: sum(m[k] for m in ms)/len(ms) for k in ms[0]}
    syn = {k: v for k, v in avg.items() if not k.startswith('real_')}
    means = [sum(v for k, v in m.items() if not k.startswith('real_'))/len(syn) for m in ms]
    print(f"== {tag:14s} mean {sum(syn.values())/len(syn):+.2f} (draws {min(means):+.2f}..{max(means):+.2f}) worst {min(syn.values()):+.2f} | "
          + ' '.join(f"{k[:10]} {v:+.2f}" for k, v in avg.items())
          + " | real_noise per draw " + ' '.join(f"{m.get('real_noise', float('nan')):+.2f}" for m in ms), flush=True)
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
elif exp == 'dark':  # the eighth round: clean dark photos (real camera noise) in the gate's stream
    streams = [('mix', mix)] + ([('mix2', [e[:3] for e in torch.load(os.environ['BUFFER2'])])] if os.environ.get('BUFFER2') else [])
    h4 = FidelityConfig(hidden=4, image_stats=True)
    for sname, entries in streams:
        for name, kw in [('h4', dict(norm=16)), ('h4 cap45', dict(norm=16, cap=45)), ('h4 cap37', dict(norm=16, cap=37))]:
            ms = []
            for seed in range(4):
                ms.append(score(fit(random.Random(seed).sample(entries, min(96, len(entries))), h4, seed=seed, **kw), f'{sname} {name} seed{seed}')[1])
            summary(f'{sname} {name}', ms)
elif exp == 'stable':  # the eighth round: fits that vary less with the images drawn
    streams = [('mix', mix)] + ([('mix2', [e[:3] for e in torch.load(os.environ['BUFFER2'])])] if os.environ.get('BUFFER2') else [])
    h4 = FidelityConfig(hidden=4, image_stats=True)
    variants = [('h4', dict(norm=16)), ('h4 avg', dict(norm=16, average=True)), ('h4 ens4', dict(norm=16, ensemble=4)),
                ('h4 ens4 avg', dict(norm=16, ensemble=4, average=True)), ('h4 wd', dict(norm=16, wd=0.1))]
    only = os.environ.get('VARIANTS')
    variants = [v for v in variants if not only or v[0] in only.split(',')]
    for sname, entries in streams[::-1]:
        for name, kw in variants:
            ms = []
            for seed in range(4):
                ms.append(score(fit(random.Random(seed).sample(entries, min(96, len(entries))), h4, seed=seed, **kw), f'{sname} {name} seed{seed}')[1])
            summary(f'{sname} {name}', ms)
elif exp == 'clean':  # the eighth round: more clean samples in the stream (BUFFER2's entries, e.g. exposure-augmented)
    entries = [e[:3] for e in torch.load(os.environ['BUFFER2'])] if os.environ.get('BUFFER2') else mix
    h4 = FidelityConfig(hidden=4, image_stats=True)
    clean, other = [e for e in entries if e[2] == 'none'], [e for e in entries if e[2] != 'none']
    print(len(clean), 'clean of', len(entries), flush=True)
    for share in (0.15, 0.25):
        ms = []
        for seed in range(4):
            rnd = random.Random(seed); k = round(96 * share)
            draw = rnd.sample(clean, k) + rnd.sample(other, 96 - k); rnd.shuffle(draw)
            ms.append(score(fit(draw, h4, seed=seed, norm=16), f'clean {share} seed{seed}')[1])
        summary(f'clean {share:.2f}', ms)
elif exp == 'clip':  # the eighth round: bounded standardised statistics, or a standardisation from more images
    entries = [e[:3] for e in torch.load(os.environ['BUFFER2'])] if os.environ.get('BUFFER2') else mix
    h4 = FidelityConfig(hidden=4, image_stats=True)
    seeds = int(os.environ.get('SEEDS', 6))
    for name, mode, at, norm in [('as is', None, 3, 16), ('clamp 3', 'clamp', 3, 16), ('tanh 3', 'tanh', 3, 16),
                                 ('norm 48', None, 3, 48), ('tanh 3 norm 48', 'tanh', 3, 48)]:
        if os.environ.get('VARIANTS') and name not in os.environ['VARIANTS'].split(','): continue
        CLIP.update(mode=mode, at=at)
        ms = []
        for seed in range(seeds):
            ms.append(score(fit(random.Random(seed).sample(entries, min(96, len(entries))), h4, seed=seed, norm=norm), f'{name} seed{seed}')[1])
        summary(name, ms)
elif exp == 'subcrop':  # the eighth round: whole-image statistics of sub-crops too, more distinct images per restore
    raw = torch.load(os.environ['BUFFER2']) if os.environ.get('BUFFER2') else torch.load(sys.argv[1])
    h4 = FidelityConfig(hidden=4, image_stats=True)
    probe = FidelityGate(h4)
    def expand(e, k, side, rnd):  # the entry itself, then k random side-px sub-crops (8 px aligned), statistics recomputed
        st, d, label, x8 = e
        x = x8.float() / 127.5 - 1; T = x - d[:3].float(); R = T - d[3:6].float()
        out = [(st, d, label)]
        H, W = x.shape[-2:]
        for _ in range(k):
            y0, x0 = 8 * rnd.randint(0, (H - side) // 8), 8 * rnd.randint(0, (W - side) // 8)
            c = lambda t: t[..., y0:y0 + side, x0:x0 + side]
            with torch.no_grad():
                s2 = probe.statistics(c(x)[None], c(R)[None], c(T)[None])[0]
            out.append((s2.half(), c(d), label))
        return out
    seeds = int(os.environ.get('SEEDS', 6))
    for name, k, side, buf in [('as is', 0, 128, 128), ('sub4 x160', 4, 160, 640), ('sub4 x128', 4, 128, 640),
                               ('sub8 x160', 8, 160, 1152)]:
        if os.environ.get('VARIANTS') and name not in os.environ['VARIANTS'].split(','): continue
        ms = []
        for seed in range(seeds):
            rnd = random.Random(seed)
            draw = rnd.sample(raw, min(96, len(raw)))
            stream = [x for e in draw for x in expand(e, k, side, rnd)]
            ms.append(score(fit(stream, h4, seed=seed, norm=16 * (k + 1), buf=buf, ups=8, ub=16 if k == 0 else 32, chunk=4 * (k + 1)), f'{name} seed{seed}')[1])
        summary(name, ms)
elif exp == 'select':  # the eighth round: several gates fitted on the same stream, the one with the lowest loss kept
    entries = [e[:3] for e in torch.load(os.environ['BUFFER2'])] if os.environ.get('BUFFER2') else mix
    h4 = FidelityConfig(hidden=4, image_stats=True)
    n = h4.features
    def buffer_loss(g, draw):  # the stage's loss on whole buffered images
        with torch.no_grad():
            tot = []
            for st, d, _ in draw:
                a, b = g.gates_from(st[None].float()); d = d[None].float()
                tot.append(float(log_mse((a*d[:, :3] + b*d[:, 3:6] - d[:, 6:]).square().mean((1, 2, 3)))))
        return sum(tot) / len(tot)
    seeds = int(os.environ.get('SEEDS', 6))
    for K in (4,):
        ms, ms_ens = [], []
        for seed in range(seeds):
            draw = random.Random(seed).sample(entries, min(int(os.environ.get('IMAGES', 96)), len(entries)))
            ups = int(os.environ.get('UPS', 8))
            gates = ([fit(draw, h4, seed=seed, init_seed=seed * 100 + k, norm=16, ups=ups) for k in range(K)]
                     if os.environ.get('SHARED') else [fit(draw, h4, seed=seed * 100 + k, norm=16, ups=ups) for k in range(K)])
            losses = [buffer_loss(g, draw) for g in gates]
            print('losses', ' '.join(f'{l:.3f}' for l in losses), flush=True)
            ms.append(score(gates[min(range(K), key=lambda i: losses[i])], f'best of {K} seed{seed}')[1])
        for tag, mm in (('best of %d' % K, ms),):
            summary(tag, mm)
