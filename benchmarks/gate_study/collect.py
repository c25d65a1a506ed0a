"""Collect per-sample tensors (input x, clean, the restorer's output at fidelity 0 R, the tokenizer round trip T),
restored tile by tile as `rvar compare` does, for offline studies of fidelity gates (fit.py).

    python benchmarks/gate_study/collect.py RESTORER.ckpt embedded-val OUT.pt           # 6 val photos x 7 degradations
    python benchmarks/gate_study/collect.py RESTORER.ckpt real OUT.pt PAIRS_FOLDER      # 10 + 10 real pairs, 256 px
"""
import sys

import torch
from rvar.commands.compare import degradation_specs
from rvar.eval.compare import load_samples, Sample, centre_crop
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.inference import load_restoration_model, run_tiled
from rvar.pixels import to_signed, to_unit
from rvar.io import read_image
from pathlib import Path
ckpt, split, out = sys.argv[1], sys.argv[2], sys.argv[3]
REAL = sys.argv[4] if len(sys.argv) > 4 else ''
if split == 'real':
    samples=[]
    for kind in ['noise','rain']:
        for path in sorted(Path(REAL, 'degraded').glob(f'*__{kind}*.png'))[:10]:
            name, k = path.stem.rsplit('__',1)
            both=torch.cat([read_image(path).rgb, read_image(Path(REAL, 'clean')/f'{name}.png').rgb])
            both=centre_crop(both,256,path); samples.append(Sample(name,k,both[:3],both[3:]))
else:
    samples = load_samples(split, degradation_specs(EVAL_DEGRADATIONS), 256, 0, 6)
model = load_restoration_model(ckpt, torch.device('cpu'), 'fp32', fidelity=0.0)
r = model.module
def rt(x, context=None):
    cond = r.tokenizer.encode_condition(to_signed(x)); side = r.prior.patch_nums[-1]
    lat = r.tokenizer.condition_to_continuous(cond).float().transpose(1,2).unflatten(2,(side,side))
    return to_unit(r.tokenizer.decode(lat))
rows=[]
with torch.inference_mode():
    for i,s in enumerate(samples):
        torch.manual_seed(i)
        R = run_tiled(model.fn, s.degraded, model.native, 16, overlap=32)
        T = run_tiled(rt, s.degraded, model.native, 16, overlap=32)
        rows.append(dict(name=s.name, deg=s.degradation.split(':')[0], x=s.degraded, clean=s.clean, R=R, T=T))
        print(i, end=' ', flush=True)
torch.save(rows, out)
