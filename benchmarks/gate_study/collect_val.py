"""Collect (x, clean, R, T) of N validation photos x the demo's 7 degradations, restored as `rvar compare` restores
them (64 px tiles overlapping by half) by a gated restorer's networks (R: its output before the gate); for
fit_stream.py.

    python benchmarks/gate_study/collect_val.py GATED.ckpt OUT.pt 18

SPLIT=FOLDER reads another folder of photos (e.g. some training photos); OVERLAP=0 tiles without overlap, as the
fidelity stage does.
"""
import sys, torch
from rvar.commands.compare import degradation_specs
from rvar.eval.compare import load_samples
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.inference import load_restoration_model, run_tiled
ckpt, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
samples = load_samples(__import__('os').environ.get('SPLIT', 'embedded-val'), degradation_specs(EVAL_DEGRADATIONS), 256, 0, n)
m = load_restoration_model(ckpt, torch.device('cpu'), 'fp32', fidelity=1.0)
rows = []
with torch.inference_mode():
    for i, s in enumerate(samples):
        torch.manual_seed(i)
        RT = run_tiled(m.fn, s.degraded, m.native, 16, overlap=int(__import__("os").environ.get("OVERLAP", "32")))
        rows.append(dict(name=s.name, deg=s.degradation.split(':')[0], x=s.degraded, clean=s.clean, R=RT[:3], T=RT[3:]))
torch.save(rows, out); print(len(rows))
