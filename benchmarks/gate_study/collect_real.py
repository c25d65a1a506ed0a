"""Collect (x, clean, R, T) of real published pairs (a folder of clean/NAME.png and degraded/NAME__TYPE.png, e.g.
PolyU camera noise and Rain100H; research data, measured, never shipped), restored as `rvar restore` restores them
(64 px tiles overlapping by half, whole images) by a gated restorer's networks (R: its output before the gate); for
fit_stream.py's REAL scores.

    python benchmarks/gate_study/collect_real.py GATED.ckpt PAIRS_DIR OUT.pt [PER_TYPE]
"""
import sys
from pathlib import Path

import torch

from rvar.inference import load_restoration_model, run_tiled
from rvar.io import read_image

ckpt, folder, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
per_type = int(sys.argv[4]) if len(sys.argv) > 4 else 10
m = load_restoration_model(ckpt, torch.device('cpu'), 'fp32', fidelity=1.0)
rows, counts = [], {}
with torch.inference_mode():
    for path in sorted((folder / 'degraded').glob('*__*.png')):
        name, kind = path.stem.rsplit('__', 1)
        if counts.get(kind, 0) >= per_type:
            continue
        counts[kind] = counts.get(kind, 0) + 1
        x, clean = read_image(path).rgb, read_image(folder / 'clean' / f'{name}.png').rgb
        torch.manual_seed(len(rows))
        RT = run_tiled(m.fn, x, m.native, 16, overlap=32)
        rows.append(dict(name=name, deg='real_' + kind, x=x, clean=clean, R=RT[:3], T=RT[3:]))
        print(name, kind, flush=True)
torch.save(rows, out)
print(len(rows))
