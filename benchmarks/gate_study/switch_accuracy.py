"""How well the image switch's classifier (8 -> 16 -> labels) tells the degradations apart from the input alone
(rvar.nn.fidelity.switch_features), by how many training-mix images it learns from: it degrades N 256 px images of
the fidelity stage's data (experiments/tiny/fidelity.yaml, every training image), trains on the first n of them,
and scores the validation photos of a collect_val.py file (their labels are the demo's seven degradations).

    python benchmarks/gate_study/switch_accuracy.py VAL.pt [N]        # N default 1600

Prints, per n in 100, 400, 1600 (up to N), the accuracy with the first 7 features, with 8 (the 8th is the
vertical/horizontal step ratio) and with 9 (the 9th, switch_highlights: the 99 % brightness quantile), and the
mistakes (true label, guessed label) of the last two.
"""
import sys, time, collections, yaml, torch
import torch.nn as nn, torch.nn.functional as F
from rvar.data import DegradationDataModule
from rvar.nn.fidelity import switch_features
from rvar.pixels import to_signed

val = torch.load(sys.argv[1]); N = int(sys.argv[2]) if len(sys.argv) > 2 else 1600
cfg = yaml.safe_load(open('experiments/tiny/fidelity.yaml'))['data']['init_args']
cfg.update(num_workers=1, batch_size=16, train_exclude=None)
torch.manual_seed(0)
dm = DegradationDataModule(**cfg); dm.setup('fit')
X, labels, t0 = [], [], time.time()
for batch in dm.train_dataloader():
    batch = dm.on_after_batch_transfer(batch, 0)
    X.append(switch_features(to_signed(batch['degraded']).float(), highlights=True)); labels += list(batch['degradation'])
    if len(labels) >= N: break
X = torch.cat(X); print(len(labels), 'images degraded and described in', round(time.time() - t0, 1), 's;',
                       dict(collections.Counter(labels)))
classes = sorted(set(labels)); y = torch.tensor([classes.index(c) for c in labels])
Xv = switch_features(torch.stack([r['x'] for r in val]) * 2 - 1, highlights=True); yv = torch.tensor([classes.index(r['deg']) for r in val])


def accuracy(n, cols, hidden=16, steps=600):
    torch.manual_seed(0)
    Xt, yt = X[:n][:, cols], y[:n]
    mu, sd = Xt.mean(0), Xt.std(0).clamp_min(1e-3)
    net = nn.Sequential(nn.Linear(len(cols), hidden), nn.Tanh(), nn.Linear(hidden, len(classes)))
    opt = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad(); F.cross_entropy(net((Xt - mu) / sd), yt).backward(); opt.step()
    with torch.no_grad():
        guess = net((Xv[:, cols] - mu) / sd).argmax(1)
    mistakes = collections.Counter((classes[int(a)], classes[int(b)]) for a, b in zip(yv, guess) if a != b)
    return float((guess == yv).float().mean()), dict(mistakes)


for n in (100, 400, 1600):
    if n <= len(labels):
        print(f"{n:5d} images: 7 features {accuracy(n, list(range(7)))[0]:.2f}")
        for k in (8, 9):
            acc, mistakes = accuracy(n, list(range(k)))
            print(f"{n:5d} images: {k} features {acc:.2f}; mistakes {mistakes}")
