"""Collect (x, R, T, clean, degradation) of training-mix 256 px images (N from the train split, all of the val
split) restored tile by tile by a restorer, as this branch's fidelity stage does; for fit_mix.py.

    python benchmarks/gate_study/collect_mix.py RESTORER.ckpt FIDELITY_STAGE.yaml OUT.pt 160
"""
import sys, yaml, torch
from rvar.data import DegradationDataModule
from rvar.lit.fidelity import FidelityModule
ckpt, config, out, n_train = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = yaml.safe_load(open(config))['data']['init_args']
cfg.update(num_workers=0, batch_size=4)
torch.manual_seed(0)
dm = DegradationDataModule(**cfg); dm.setup('fit')
m = FidelityModule(ckpt)
rows = {}
for split, loader, n in (('train', dm.train_dataloader(), n_train), ('val', dm.val_dataloader(), 10**9)):
    rows[split] = []
    for batch in loader:
        batch = dm.on_after_batch_transfer(batch, 0) if hasattr(dm, 'on_after_batch_transfer') else batch
        x, R, T = m.restore(batch)
        for i in range(x.shape[0]):
            rows[split].append(dict(x=(x[i]+1)/2, R=(R[i]+1)/2, T=(T[i]+1)/2, clean=batch['clean'][i].float(), deg=str(batch['degradation'][i])))
        print(split, len(rows[split]), flush=True)
        if len(rows[split]) >= n: break
torch.save(rows, out)
