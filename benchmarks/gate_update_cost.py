"""Seconds per fidelity-gate update on 16 images of 256 px, 2 threads, side by side in one run:
the gate applied to the images (statistics recomputed every update) against an update on buffered statistics
(FidelityModule.loss_on, 128 px crops). Random tensors: the cost does not depend on the values.

    python benchmarks/gate_update_cost.py
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
gate = FidelityGate(FidelityConfig(image_stats=True))
opt = torch.optim.AdamW(gate.parameters(), lr=1e-2)
x, restored, round_trip, clean = (torch.rand(16, 3, 256, 256) * 2 - 1 for _ in range(4))
with torch.no_grad():
    stats = gate.statistics(x, restored, round_trip).half()
    diffs = torch.cat([x - round_trip, round_trip - restored, clean - restored], 1).half()
module = FidelityModule.__new__(FidelityModule)  # only loss_on's attributes: no restorer is loaded
torch.nn.Module.__init__(module)
module.gate, module.update_crop, module.psnr_cap = gate, 128, 40.0
module._device = torch.device("cpu")  # what LightningModule.device reads
buffered = list(zip(stats, diffs))


def step(loss_fn) -> float:
    start = time.perf_counter()
    loss = loss_fn()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


whole = lambda: module.loss(gate(x, restored, round_trip), clean)  # noqa: E731
crops = lambda: module.loss_on(buffered)  # noqa: E731
times = {"whole images": [], "buffered crops": []}
for _ in range(12):  # interleaved, the first 2 of each dropped as warm-up
    times["whole images"].append(step(whole))
    times["buffered crops"].append(step(crops))
med = {k: statistics.median(v[2:]) for k, v in times.items()}
for k, v in med.items():
    print(f"{k}: {v:.3f} s per update")
print(f"ratio: {med['whole images'] / med['buffered crops']:.1f}x")
