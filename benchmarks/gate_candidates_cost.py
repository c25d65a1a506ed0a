"""Seconds per fidelity-stage update (16 random 128 px crops of buffered 256 px images, AdamW step) with 1 gate
against 4 candidates fitted side by side on the same crops (FidelityModule(candidates=4): one wider network),
interleaved in one run, 2 threads. Random tensors: the cost does not depend on the values.

    python benchmarks/gate_candidates_cost.py
"""
import random
import statistics
import time

import torch

from rvar.lit.fidelity import FidelityModule
from rvar.nn.fidelity import FidelityConfig, FidelityGate

torch.set_num_threads(2)
torch.manual_seed(0)
random.seed(0)
config = FidelityConfig(hidden=4, image_stats=True, standardise=True)
probe = FidelityGate(config)
x, restored, round_trip, clean = (torch.rand(16, 3, 256, 256) * 2 - 1 for _ in range(4))
with torch.no_grad():
    stats = probe.statistics(x, restored, round_trip).half()
    diffs = torch.cat([x - round_trip, round_trip - restored, clean - restored], 1).half()
buffered = list(zip(stats, diffs))


def bare_module(candidates: int) -> FidelityModule:
    """Only the attributes an update reads: no restorer is loaded."""
    module = FidelityModule.__new__(FidelityModule)
    torch.nn.Module.__init__(module)
    module.gate, module.update_crop, module.psnr_cap = FidelityGate(config), 128, 40.0
    module.rivals = torch.nn.ModuleList(FidelityGate(config) for _ in range(candidates - 1))
    module._device = torch.device("cpu")  # what LightningModule.device reads
    return module


def step(module: FidelityModule, opt: torch.optim.Optimizer) -> float:
    start = time.perf_counter()
    crops = module.crops(random.sample(buffered, 16))
    loss = module.candidate_losses(crops).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


setups = {}
for k in (1, 4):
    module = bare_module(k)
    setups[f"{k} gate{'s' if k > 1 else ''}"] = (module, torch.optim.AdamW(
        [p for g in module.candidates() for p in g.parameters()], lr=1e-2, weight_decay=0.0))
times = {name: [] for name in setups}
for _ in range(14):  # interleaved, the first 2 of each dropped as warm-up
    for name, (module, opt) in setups.items():
        times[name].append(step(module, opt))
med = {k: statistics.median(v[2:]) for k, v in times.items()}
for k, v in med.items():
    print(f"{k}: {v:.4f} s per update")
print(f"ratio: {med['4 gates'] / med['1 gate']:.2f}x")
