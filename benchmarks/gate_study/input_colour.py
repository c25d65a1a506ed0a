"""Low light's colours: how far the input's own colours, brought up to the restored brightness, could fix the
restorer's (greens that come back brown).

For each low-light row of collect_val.py tensors (restored by GATED.ckpt's networks), scores against the clean photo
(PSNR, mean CIEDE2000):

- x: the input; R: the restorer; G: the gated output, as `rvar restore` gives it;
- X: the input brought up by one tone curve ``(x / k) ** (1 / gamma)`` (the same for R, G and B), fitted per image
  against G (rvar.nn.fidelity.tone_curve);
- C<w>: G's brightness (mean over RGB) with its colour (the rest) moved a share w towards X's, X's colour smoothed
  over a ``SMOOTH`` px box (noise amplified by the curve).

    python benchmarks/gate_study/input_colour.py GATED.ckpt VAL.pt [GRID.png]     # DEG=gauss: another degradation
"""
import os
import sys

import torch

from rvar.eval.metrics import ciede2000_per_image, psnr_per_image
from rvar.nn.checkpoints import build_restorer, load_checkpoint
from rvar.nn.fidelity import input_colour

gate = build_restorer(load_checkpoint(sys.argv[1]), sys.argv[1]).gate.eval()
rows = [r for r in torch.load(sys.argv[2]) if r["deg"].startswith(os.environ.get("DEG", "low"))]
smooth = int(os.environ.get("SMOOTH", "5"))
shares = (0.5, 1.0)
table, grid = {}, []
for r in rows:
    x, R, T, clean = (r[k][None].float() * 2 - 1 for k in ("x", "R", "T", "clean"))
    with torch.no_grad():
        G = gate(x, R, T).clamp(-1, 1)
    X, C = input_colour(x, G, smooth=smooth)
    outs = {"x": x, "R": R, "G": G, "X": X}
    for w in shares:
        outs[f"C{w:g}"] = (G + w * (C - G)).clamp(-1, 1)
    u = {k: (v.clamp(-1, 1) + 1) / 2 for k, v in outs.items()}
    c = (clean + 1) / 2
    line = []
    for k, v in u.items():
        p, e = float(psnr_per_image(v, c)[0]), float(ciede2000_per_image(v, c)[0])
        table.setdefault(k, []).append((p, e))
        line.append(f"{k} {p:5.2f}/{e:4.1f}")
    print(f"{r['name'][:18]:18s}", "  ".join(line))
    grid.append(torch.cat([u["x"], u["G"], u["C1"], c], dim=3))
print("mean (PSNR dB / CIEDE2000):", "  ".join(
    f"{k} {sum(p for p, _ in v) / len(v):.2f}/{sum(e for _, e in v) / len(v):.2f}" for k, v in table.items()))
if len(sys.argv) > 3:
    from PIL import Image
    img = torch.cat(grid, dim=2)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    Image.fromarray(img).save(sys.argv[3])
    print("grid (input | gated | colour from the input | clean):", sys.argv[3])
