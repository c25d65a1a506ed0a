"""How much a share of the prior's own decoded output could add to a gated restorer: for N validation photos x the
demo's 7 degradations, restored as `rvar compare` restores them (64 px tiles overlapping by half), the gated output
G, the prior's decoded latent P (decode(f_hat), before the refiner) and the best blend G + v (P - G) per
degradation (an oracle: v chosen on these very images, so an upper bound).

    python benchmarks/gate_study/prior_headroom.py GATED.ckpt 18 [OUT.pt]
"""
import collections, os, sys
import torch
from rvar.commands.compare import degradation_specs
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.eval.compare import load_samples
from rvar.eval.metrics import psnr_per_image
from rvar.inference import load_restoration_model, run_tiled
from rvar.pixels import to_signed, to_unit

ckpt, n = sys.argv[1], int(sys.argv[2])
samples = load_samples(os.environ.get('SPLIT', 'embedded-val'), degradation_specs(EVAL_DEGRADATIONS), 256, 0, n)
m = load_restoration_model(ckpt, torch.device('cpu'), 'fp32', fidelity=1.0)
r = m.module


def fn(x, context=None):
    with torch.inference_mode():
        out = r.restore(to_signed(x), fidelity=0.0, keep_round_trip=True,
                        context_B3HW=None if context is None else to_signed(context))
        P = r.tokenizer.decode(out.f_hat.float()).float().clamp(-1, 1)
        return torch.cat([to_unit(out.image.float()), to_unit(out.round_trip.float()), to_unit(P)], 1)


fn.takes_context = r.uses_context
rows = []
for i, s in enumerate(samples):
    torch.manual_seed(i)
    RTP = run_tiled(fn, s.degraded, m.native, 16, overlap=32)
    x, R, T, P = (to_signed(t)[None] for t in (s.degraded, RTP[:3], RTP[3:6], RTP[6:]))
    with torch.inference_mode():
        G = r.gate(x, R, T).clamp(-1, 1)
    rows.append(dict(name=s.name, deg=s.degradation.split(':')[0], x=s.degraded, clean=s.clean, R=RTP[:3],
                     T=RTP[3:6], P=RTP[6:], G=to_unit(G)[0]))
if len(sys.argv) > 3:
    torch.save(rows, sys.argv[3])
shares = [i / 10 for i in range(11)]
per = collections.defaultdict(lambda: collections.defaultdict(list))
for row in rows:
    cl, x = row['clean'][None], row['x'][None]
    base = float(psnr_per_image(x, cl)[0])
    for name in ('R', 'P', 'G'):
        per[row['deg']][name].append(float(psnr_per_image(row[name][None], cl)[0]) - base)
    for v in shares:
        B = (row['G'] + v * (row['P'] - row['G'])).clamp(0, 1)[None]
        per[row['deg']][v].append(float(psnr_per_image(B, cl)[0]) - base)
mean = lambda l: sum(l) / len(l)
print(f"{'degradation':14s} {'R':>6s} {'P':>6s} {'G':>6s} {'best v':>6s} {'G+vP':>6s}")
total = collections.defaultdict(list)
for deg, d in per.items():
    best = max(shares, key=lambda v: mean(d[v]))
    for k in ('R', 'P', 'G'):
        total[k] += d[k]
    total['best'] += d[best]
    print(f"{deg:14s} {mean(d['R']):+6.2f} {mean(d['P']):+6.2f} {mean(d['G']):+6.2f} {best:6.1f} {mean(d[best]):+6.2f}")
print(f"{'all':14s} {mean(total['R']):+6.2f} {mean(total['P']):+6.2f} {mean(total['G']):+6.2f} {'':6s} {mean(total['best']):+6.2f}")
