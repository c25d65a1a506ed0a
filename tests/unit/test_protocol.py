"""RestoreVAR's evaluation protocol (issue #13.1): metrics against scikit-image, the paired Lanczos resize,
the per-test-set limit and the Table 1 layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rvar.data.evaluation import ProtocolDataset, lanczos_resize, paired_resize, to_uint8
from rvar.eval.protocol import (PAPER_TABLE1, EvalProtocol, ProtocolScorer, format_table1, psnr_uint8, ssim_uint8,
                                table1_rows, table1_set)
from rvar.io import read_image
from tests.tiny_reference import FIXTURES


def _pairs():
    """Real fixture images (restored vs clean, degraded vs clean) and a random pair of an odd size."""
    out = []
    for n in (0, 1):
        clean = read_image(FIXTURES / f"tiny_clean_{n}.png").rgb
        out.append((read_image(FIXTURES / f"tiny_restored_{n}.png").rgb, clean))
        out.append((read_image(FIXTURES / f"tiny_degraded_{n}.png").rgb, clean))
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 37, 53, generator=g)
    out.append(((a + 0.1 * torch.randn(3, 37, 53, generator=g)).clamp(0, 1), a))
    return out


@pytest.mark.parametrize("number", range(5))
def test_psnr_and_ssim_agree_with_scikit_image(number):
    pred, target = _pairs()[number]
    pred = pred + 0.3 / 255  # not on the uint8 grid: the protocol's truncation decides the pixel values
    x, y = (to_uint8(t).permute(1, 2, 0).numpy() for t in (target, pred))
    expected_psnr = peak_signal_noise_ratio(x, y, data_range=255)
    expected_ssim = structural_similarity(x, y, channel_axis=-1, data_range=255)
    assert abs(float(psnr_uint8(pred[None], target[None])[0]) - expected_psnr) < 1e-4
    assert abs(float(ssim_uint8(pred[None], target[None])[0]) - expected_ssim) < 1e-4


def test_quantisation_truncates_like_the_reference():
    x = torch.tensor([0.0, 0.5, 0.99999, 1.0, 1.5, -0.2])
    expected = (np.clip(x.numpy(), 0, 1) * 255).astype(np.uint8)  # the reference's numpy cast
    assert to_uint8(x).tolist() == expected.tolist()


def test_paired_lanczos_resize_is_pils_and_ignores_aspect(tmp_path):
    g = torch.Generator().manual_seed(1)
    degraded, clean = torch.rand(3, 30, 70, generator=g), torch.rand(3, 30, 70, generator=g)
    d512, c512 = paired_resize(degraded, clean, 512)
    assert d512.shape == c512.shape == (3, 512, 512)
    pil = Image.fromarray(to_uint8(clean).permute(1, 2, 0).numpy()).resize((512, 512), Image.LANCZOS)
    assert torch.equal(to_uint8(c512).permute(1, 2, 0), torch.from_numpy(np.array(pil)))
    assert torch.equal(lanczos_resize(degraded, 512), d512)


def test_protocol_dataset_limits_each_test_set(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("Snow100K", "GoPro"):
        for sub in ("input", "target"):
            (tmp_path / name / sub).mkdir(parents=True)
            for n in range(3):
                Image.fromarray(rng.integers(0, 256, (20 + n, 31, 3), dtype=np.uint8)).save(
                    tmp_path / name / sub / f"{n}.png")
    data = ProtocolDataset([tmp_path / "Snow100K", tmp_path / "GoPro"], size=48, max_images=2)
    assert len(data) == 4 and [data[i]["degradation"] for i in range(4)] == ["Snow100K"] * 2 + ["GoPro"] * 2
    assert data[0]["degraded"].shape == data[0]["clean"].shape == (3, 48, 48)


def test_labels_map_to_table1_sets():
    assert [table1_set(l) for l in ("SOTS-outdoor", "haze", "Snow100K", "rain", "LOLv1", "motion_blur", "x")] == \
        ["RESIDE", "RESIDE", "Snow100K", "Rain13K", "LOLv1", "GoPro", None]


def test_table1_layout_carries_the_paper_rows():
    rows = table1_rows([{"model": "m", "degradation": "GoPro", "psnr": 20.0, "ssim": 0.5, "lpips": None},
                        {"model": "m", "degradation": "haze", "psnr": 22.0, "ssim": 0.7, "lpips": None},
                        {"model": "m", "degradation": "haze", "psnr": 24.0, "ssim": 0.9, "lpips": None}])
    assert [(r["dataset"], r["images"]) for r in rows] == [("RESIDE", 2), ("GoPro", 1)]  # Table 1's order
    text = format_table1(rows)
    assert "| RESIDE | m | 2 | 23.00 | 0.800 | - |" in text
    assert "| RESIDE | RestoreVAR (paper, Table 1) | - | 24.67 | 0.821 | 0.074 |" in text
    assert "| GoPro | RestoreVAR (paper, Table 1) | - | 23.96 | 0.737 | 0.167 |" in text
    assert len(PAPER_TABLE1) == 5


def test_scorer_quantises_and_skips_lpips_without_weights(monkeypatch, tmp_path):
    import rvar.eval.metrics

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no AlexNet weights here
    monkeypatch.setattr(rvar.eval.metrics, "_LPIPS_WARNED", False)
    with pytest.warns(UserWarning, match="LPIPS skipped"):
        scorer = ProtocolScorer(EvalProtocol.named("restorevar"))
    pred, target = _pairs()[0]
    scores = scorer(pred[None], target[None])
    assert scores["lpips"] is None
    assert torch.allclose(scores["psnr"].double(), psnr_uint8(pred[None], target[None]), atol=1e-4)
