"""Every registered degradation, driven from the registry (timm's pattern)."""
import pytest
import torch

from rvar.data.degrade import is_device_op, make_degradation
from rvar.io import read_image
from rvar.registry import DEGRADATIONS
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def batch_BCHW() -> torch.Tensor:
    return torch.stack([read_image(FIXTURES / f"tiny_clean_{i}.png").rgb for i in (0, 1)])


def _run(op, images, seed):
    return op(images.clone(), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", DEGRADATIONS.list())
def test_degradation_contract(name, batch_BCHW):
    op = make_degradation(name)
    out = _run(op, batch_BCHW, 1)
    assert out.shape == batch_BCHW.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.isnan(out).any()
    assert (out - batch_BCHW).abs().mean() > 1e-3, "a degradation must change the image"
    assert torch.equal(out, _run(op, batch_BCHW, 1)), "same generator seed -> same result"
    assert not torch.equal(out, _run(op, batch_BCHW, 2)), "different seeds -> different results"
    assert isinstance(is_device_op(op), bool)


@pytest.mark.parametrize("name", DEGRADATIONS.list())
def test_degradation_does_not_touch_global_rng(name, batch_BCHW):
    op = make_degradation(name)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _run(op, batch_BCHW, 5)
    assert torch.equal(torch.rand(3), expected)


def test_degradation_docstrings_document_ranges():
    for name in DEGRADATIONS.list():
        doc = DEGRADATIONS.get(name).__doc__ or ""
        assert "range" in doc or "Args" in doc, name


@pytest.mark.parametrize("name", DEGRADATIONS.list())
def test_per_image_generators_match_image_by_image(name, batch_BCHW):
    """Ops that take one generator per image give each image what a batch of one would (up to float rounding)."""
    op = make_degradation(name)
    if not getattr(op, "per_image_generators", False):
        pytest.skip("called image by image")
    batched = op(batch_BCHW.clone(), [torch.Generator().manual_seed(s) for s in (3, 4)])
    single = torch.cat([_run(op, batch_BCHW[i:i + 1], s) for i, s in enumerate((3, 4))])
    assert (batched - single).abs().max() < 1e-6
