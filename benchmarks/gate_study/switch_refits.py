"""Switch variants refitted on one fidelity stage's buffer (dump_buffer.py), with the stage's own classifier procedure
(``fit_switch``: k-fold held-out probabilities for the trusts), scored on collect_val.py tensors of the same
restorer (PSNR gain over the input per degradation, and the mean):

- shared: a trust in the restorer and one in the input per label, for brightness and colour alike (the stage's);
- split: separate trusts for brightness and colour (the switched MSE splits exactly into the two);
- sharpened: the shared trusts on the classifier's probabilities raised to a fitted power (renormalised);
- keep prior L: the shared trusts with L x the mean distrust in the input added to the loss (the input when the
  fit is indifferent).

    python benchmarks/gate_study/switch_refits.py BUFFER.pt VAL.pt
"""
import collections
import sys

import torch
import torch.nn.functional as F

from rvar.eval.metrics import psnr_per_image
from rvar.nn.fidelity import FidelityConfig, FidelityGate, blend, fit_switch, switch_features, switched_mse

dump = torch.load(sys.argv[1])
cfg = FidelityConfig(**dump["config"])
if not (cfg.chroma and cfg.switch_keep and cfg.switch_inputs == "input"):
    raise SystemExit("switch_refits.py needs the tiny recipe's gate: chroma, switch_keep, switch_inputs input")
gate = FidelityGate(cfg)
gate.load_state_dict(dump["gate"])
gate.switch_fitted.fill_(0)
gate.eval()
start = {k: v.clone() for k, v in gate.switch_classifier.state_dict().items()}  # as the stage's fit starts
classes, floor = cfg.switch_classes, 4.0 * 10 ** (-dump["psnr_cap"] / 10)
index = lambda label: classes.index(label) if label in classes else -1  # noqa: E731
luma = lambda t: t.mean(1, keepdim=True).expand_as(t)  # noqa: E731


def six(c, u, w):
    return [(c * c).mean(), (c * w).mean(), (w * w).mean(), (u * u).mean(), (c * u).mean(), (u * w).mean()]


rows = []
with torch.no_grad():  # per restored image: the six terms of the brightness, then of the colour
    for stats, diffs in dump["buffer"]:
        a, b = gate.gates_from(stats[None].float())
        d = diffs[None].float()
        c, u, w = blend(a, d[:, :3]) + blend(b, d[:, 3:6]), d[:, :3] + d[:, 3:6], d[:, 6:]
        rows.append(torch.stack(six(luma(c), luma(u), luma(w)) + six(c - luma(c), u - luma(u), w - luma(w))))
terms = torch.stack(rows)
features = torch.cat([torch.stack(dump["inputs"]), torch.stack([f for f, _ in dump["pool"]])]).float()
labels = torch.tensor([index(l) for l in dump["labels"]] + [index(l) for _, l in dump["pool"]])
mean, std = features.mean(0), features.std(0).clamp_min(1e-3)
z = (features - mean) / std
gate.switch_mean.copy_(mean)
gate.switch_std.copy_(std)
with torch.enable_grad():  # the classifier kept, as the stage fits it
    fit_switch(gate, z, labels, torch.cat([terms[:, :6] + terms[:, 6:], torch.full((len(z) - len(terms), 6), float("nan"))]), floor)
kept = {k: v.clone() for k, v in gate.switch_classifier.state_dict().items()}

# the held-out probabilities the trusts are fitted on (fit_switch's folds, the same order)
classifier, labelled = gate.switch_classifier, labels >= 0
order = torch.randperm(len(z), generator=torch.Generator().manual_seed(0))
held_out = torch.zeros(len(z), len(classes))
for fold in order.chunk(5):
    classifier.load_state_dict(start)
    train = order[~torch.isin(order, fold)]
    train = train[labelled[train]]
    opt = torch.optim.Adam(classifier.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(400):
        loss = F.cross_entropy(classifier(z[train]), labels[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        held_out[fold] = torch.softmax(classifier(z[fold]), 1)
classifier.load_state_dict(kept)
probabilities = held_out[:len(terms)]


def fit(split=False, sharpen=False, keep_prior=0.0):
    """Trusts (2, labels) in the restorer and in the input (brightness, colour) and the power, fitted."""
    t = torch.zeros(2, len(classes), requires_grad=True)
    k = torch.full((2, len(classes)), -2.0, requires_grad=True)
    g = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([t, k] + ([g] if sharpen else []), lr=5e-2)
    for _ in range(400):
        q = probabilities.clamp_min(1e-8) ** g.exp()
        q = q / q.sum(1, keepdim=True)
        if split:
            mse = sum(switched_mse(terms[:, 6 * i:6 * i + 6], q @ torch.sigmoid(t[i]), q @ torch.sigmoid(k[i]))
                      for i in range(2))
        else:
            mse = switched_mse(terms[:, :6] + terms[:, 6:], q @ torch.sigmoid(t[0]), q @ torch.sigmoid(k[0]))
        loss = torch.log(mse + floor).mean() + keep_prior * (1 - torch.sigmoid(k[0])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t, k = t.detach().clone(), k.detach().clone()
    if not split:
        t[1], k[1] = t[0], k[0]
    return t, k, float(g.exp())


def score(t, k, power):
    per = collections.defaultdict(list)
    with torch.no_grad():
        for r in torch.load(sys.argv[2]):
            x, R, T, clean = (r[n][None] * 2 - 1 for n in ("x", "R", "T", "clean"))
            a, b = gate.gates(x, R, T)  # the switch is off: its trusts come next
            p = torch.softmax(classifier((switch_features(x) - mean) / std), 1) ** power
            p = p / p.sum(1, keepdim=True)
            s, kappa = (p @ torch.sigmoid(t).T)[0], (p @ torch.sigmoid(k).T)[0]  # (brightness, colour)
            scale, shift = ((1 - s) * (1 - kappa)).view(1, 2, 1, 1), kappa.view(1, 2, 1, 1)
            out = R + blend(a * scale + shift, x - T) + blend(b * scale + shift, T - R)
            to01 = lambda v: (v.clamp(-1, 1) + 1) / 2  # noqa: E731
            per[r["deg"]].append(float(psnr_per_image(to01(out), to01(clean))[0] - psnr_per_image(to01(x), to01(clean))[0]))
    overall = sum(sum(v) for v in per.values()) / sum(len(v) for v in per.values())
    return f"{overall:+.2f} | " + " ".join(f"{d[:5]} {sum(v) / len(v):+.2f}" for d, v in per.items())


print(f"{len(terms)} restored images, {len(z)} classified")
for name, kwargs in (("shared", {}), ("split", {"split": True}), ("sharpened", {"sharpen": True}),
                     ("keep prior 0.01", {"keep_prior": 0.01}), ("keep prior 0.05", {"keep_prior": 0.05})):
    t, k, power = fit(**kwargs)
    keep = ", ".join(f"{c[:5]} {float(v):.2f}" for c, v in zip(classes, torch.sigmoid(k[0])))
    print(f"{name:16s} power {power:.2f}  {score(t, k, power)}\n{'':16s} trust in the input: {keep}")
