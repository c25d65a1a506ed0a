import pytest
import torch

from rvar.data.degrade import DegradationPipeline, sample_seed
from rvar.errors import UserError
from rvar.io import read_image
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

SPECS = [{"name": "rain", "weight": 2.0}, {"name": "fog"}, {"name": "gaussian_noise", "options": {"sigma": [10, 20]}}]


@pytest.fixture(scope="module")
def image_CHW():
    return read_image(FIXTURES / "tiny_clean_0.png").rgb


def test_sample_seed_is_stable_and_distinct():
    assert sample_seed(0, "train", 7) == sample_seed(0, "train", 7)
    assert len({sample_seed(0, "train", k) for k in range(100)}) == 100
    assert sample_seed(0, "train", 1) != sample_seed(0, "val", 1) != sample_seed(1, "val", 1)


@pytest.mark.parametrize("mode", ["one_of", "chain"])
def test_pipeline_reproducible_from_seed_and_index(mode, image_CHW):
    first = DegradationPipeline(SPECS, mode, seed=3)
    second = DegradationPipeline(SPECS, mode, seed=3)  # e.g. another worker or rank
    for index in range(6):
        seed = sample_seed(3, "train", index)
        a, label_a = first(image_CHW, seed)
        b, label_b = second(image_CHW, seed)
        assert torch.equal(a, b) and label_a == label_b


def test_split_stages_equal_one_pass(image_CHW):
    pipeline = DegradationPipeline(SPECS, "chain")
    items = [pipeline.worker_stage(image_CHW, sample_seed(0, "val", i)) for i in range(3)]
    staged = pipeline.apply(torch.stack([i["degraded"] for i in items]), torch.stack([i["plan"] for i in items]),
                            device_ops=True)
    direct = torch.stack([pipeline(image_CHW, sample_seed(0, "val", i))[0] for i in range(3)])
    assert torch.equal(staged, direct)
    assert [i["degradation"] for i in items] == [pipeline(image_CHW, sample_seed(0, "val", i))[1] for i in range(3)]


def test_batched_device_stage_matches_image_by_image(image_CHW):
    """One op call per batch: a sample's pixels do not depend on its batch, up to float rounding (haze, jpeg)."""
    pipeline = DegradationPipeline(["haze", "rain", "low_light", "motion_blur", "gaussian_noise", "jpeg"])
    plans = torch.stack([pipeline.plan(sample_seed(0, "train", i)) for i in range(12)])
    images = image_CHW[None].expand(12, -1, -1, -1)
    batched = pipeline.apply(images, plans, device_ops=True)
    single = torch.cat([pipeline.apply(images[i:i + 1], plans[i:i + 1], device_ops=True) for i in range(12)])
    assert (batched - single).abs().max() < 1e-6 and (batched - images).abs().mean() > 1e-3


def test_one_of_follows_weights():
    pipeline = DegradationPipeline([{"name": "rain", "weight": 3.0}, {"name": "jpeg", "weight": 1.0}])
    labels = [pipeline.label(pipeline.plan(sample_seed(0, "t", i))) for i in range(400)]
    assert 0.65 < labels.count("rain") / 400 < 0.85


def test_chain_probability_zero_skips_op(image_CHW):
    pipeline = DegradationPipeline([{"name": "rain", "p": 0.0}, {"name": "jpeg"}], "chain")
    assert pipeline(image_CHW, 1)[1] == "jpeg"


def test_bad_entries_raise_user_errors():
    with pytest.raises(UserError, match="unknown degradation"):
        DegradationPipeline([{"name": "nope"}])
    with pytest.raises(UserError, match="bad options"):
        DegradationPipeline([{"name": "rain", "options": {"wrong": 1}}])
    with pytest.raises(UserError, match="mode"):
        DegradationPipeline(["rain"], mode="sometimes")
