"""`rvar compare --protocol restorevar` on a miniature paired test set: Lanczos pairs, scikit-image metrics,
table1.md with the paper's rows."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rvar.cli import main
from tests.tiny_reference import save_tiny_restorer


@pytest.mark.slow
def test_compare_with_the_restorevar_protocol(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no LPIPS weights: skipped
    rng = np.random.default_rng(3)
    pairs = []
    for n, (h, w) in enumerate([(45, 80), (70, 33)]):
        clean = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        degraded = np.clip(clean * 0.8 + 20, 0, 255).astype(np.uint8)
        for sub, image in (("input", degraded), ("target", clean)):
            (tmp_path / "GoPro" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "GoPro" / sub / f"{n}.png")
        pairs.append((degraded, clean))
    ckpt = save_tiny_restorer(tmp_path / "tiny.ckpt")
    out = tmp_path / "cmp"
    code = main(["compare", str(ckpt), "--data", str(tmp_path / "GoPro"), "--protocol", "restorevar",
                 "--size", "96", "--no-mlflow", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    with open(out / "results.csv") as handle:
        rows = {(r["model"], r["degradation"]): r for r in csv.DictReader(handle)}
    # the degraded input's scores are the protocol's: Lanczos-resize both, then scikit-image on uint8 RGB
    resized = [[np.asarray(Image.fromarray(im).resize((96, 96), Image.LANCZOS)) for im in pair] for pair in pairs]
    psnr = np.mean([peak_signal_noise_ratio(c, d, data_range=255) for d, c in resized])
    ssim = np.mean([structural_similarity(c, d, channel_axis=-1, data_range=255) for d, c in resized])
    assert abs(float(rows[("degraded input", "GoPro")]["psnr"]) - psnr) < 1e-4
    assert abs(float(rows[("degraded input", "GoPro")]["ssim"]) - ssim) < 1e-4
    table = (out / "table1.md").read_text()
    assert "| GoPro | tiny | 2 |" in table and "| GoPro | RestoreVAR (paper, Table 1) | - | 23.96 | 0.737 | 0.167 |" in table
