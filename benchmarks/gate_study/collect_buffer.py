"""Collect the fidelity stage's buffer entries (each image's gate statistics, the differences it blends, its
degradation and the input as uint8) for N training-mix 256 px images restored as the stage restores them
(experiments/tiny/fidelity.yaml's data, bf16 where native, tiles without overlap); for fit_stream.py.

    python benchmarks/gate_study/collect_buffer.py RESTORER_DECODED.ckpt OUT.pt 480 [SEED]

AUGMENT=exposure (comma-separated names of rvar.data.datasets.AUGMENTATIONS) sets the data's ``augment``;
OPTIONS='{"low_light": {"gain": [0.15, 0.5]}}' (JSON) replaces those degradations' options. CROP=128 restores
smaller images (the data's crop_size; 256 as the stage).
"""
import os, sys, yaml, torch, time
from rvar.data import DegradationDataModule
from rvar.lit.fidelity import FidelityModule
from rvar.pixels import to_signed
ckpt, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = yaml.safe_load(open('experiments/tiny/fidelity.yaml'))['data']['init_args']
cfg.update(num_workers=0, batch_size=4)
if os.environ.get('CROP'):
    cfg['crop_size'] = int(os.environ['CROP'])
if os.environ.get('OPTIONS'):
    import json
    for name, options in json.loads(os.environ['OPTIONS']).items():
        next(d for d in cfg['degradations'] if d['name'] == name)['options'] = options
if os.environ.get('AUGMENT'):
    cfg['augment'] = os.environ['AUGMENT'].split(',')
torch.manual_seed(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
dm = DegradationDataModule(**cfg); dm.setup('fit')
m = FidelityModule(ckpt, gate=dict(hidden=0, image_stats=True), restore_precision='auto')
rows = []; t0 = time.time()
for batch in dm.train_dataloader():
    batch = dm.on_after_batch_transfer(batch, 0)
    x, R, T = m.restore(batch)
    clean = to_signed(batch['clean']).float()
    with torch.no_grad():
        stats = m.gate.statistics(x, R, T)
        diffs = torch.cat([x - T, T - R, clean - R], 1)
    for i in range(x.shape[0]):
        rows.append((stats[i].half(), diffs[i].half(), str(batch["degradation"][i]), (x[i].float()*127.5+127.5).round().to(torch.uint8)))
    if len(rows) >= n: break
print(len(rows), 'in', time.time() - t0, 's')
torch.save(rows, out)
