"""The learned fidelity path (rvar.nn.fidelity): what its gates do, and how a restorer carries one."""
from __future__ import annotations

import pytest
import torch

from rvar.nn.checkpoints import build_restorer, load_checkpoint, save_checkpoint
from rvar.nn.fidelity import FEATURES, IMAGE_FEATURES, FidelityConfig, FidelityGate
from rvar.pixels import to_signed
from rvar.nn.restorer import Restorer
from tests.tiny_reference import tiny_restorer


def _images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(3)]


def test_a_new_gate_is_the_fixed_half_fidelity_and_open_gates_give_the_input():
    x, restored, round_trip = _images()
    gate = FidelityGate(FidelityConfig())
    a, b = gate.gates(x, restored, round_trip)
    assert torch.allclose(a, torch.full_like(a, 0.5)) and torch.allclose(b, torch.full_like(b, torch.sigmoid(torch.tensor(-4.0))))
    with torch.no_grad():
        gate.net[-1].bias.fill_(30.0)  # both gates open: the input itself
    assert torch.allclose(gate(x, restored, round_trip), x, atol=1e-5)
    assert torch.equal(gate(x, restored, round_trip, weight=0.0), restored)
    with torch.no_grad():
        gate.net[-1].bias.fill_(-30.0)  # both shut: the restorer's output
    assert torch.allclose(gate(x, restored, round_trip), restored, atol=1e-5)


def test_gates_follow_the_pixels_statistics():
    x, restored, round_trip = _images(1)
    gate = FidelityGate(FidelityConfig(hidden=0))
    with torch.no_grad():
        gate.net[0].weight.zero_()
        gate.net[0].weight[0, 0] = 1.0  # a rises with the restorer's local change
    a, _ = gate.gates(x, restored, round_trip)
    a_same, _ = gate.gates(x, round_trip, round_trip)  # no change at all
    assert a.mean() > a_same.mean() + 0.2


@pytest.mark.parametrize("window", [0, 4, -3])
def test_windows_must_be_odd_and_positive(window):
    with pytest.raises(ValueError, match="odd and positive"):
        FidelityConfig(small_window=window)


def test_a_restorer_with_a_gate_saves_loads_and_uses_it(tmp_path):
    plain = tiny_restorer().eval()
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, FidelityGate(FidelityConfig(hidden=4)))
    with torch.no_grad():
        gated.gate.net[-1].bias.copy_(torch.tensor([2.0, 1.0]))
    path = save_checkpoint(tmp_path / "gated.ckpt", gated)
    ckpt = load_checkpoint(path, kinds=("restorer",))
    assert ckpt["model"]["init_args"]["gate"] == {"hidden": 4, "small_window": 3, "large_window": 15,
                                                  "image_stats": False, "standardise": False}
    loaded = build_restorer(ckpt, str(path)).eval()
    assert "gate" not in plain.init_args()  # files without a gate keep their old description
    x = torch.rand(1, 3, plain.image_size, plain.image_size) * 2 - 1
    base = plain.restore(x).image  # no gate: fidelity None is 0, the published output
    assert torch.equal(loaded.restore(x, fidelity=0.0).image, base)
    with_gate = loaded.restore(x)  # None: the gate at weight 1
    assert not torch.allclose(with_gate.image, base)
    with torch.no_grad():  # as restore computes it (without gradients the tokenizer convolves channels-last)
        round_trip = loaded.round_trip(loaded.tokenizer.encode_condition(x))
    assert torch.equal(with_gate.round_trip, round_trip) and plain.restore(x).round_trip is None
    assert torch.equal(plain.restore(x, keep_round_trip=True).round_trip, round_trip)
    a, b = loaded.gate.gates(x, base, round_trip)
    expected = (base + a * (x - round_trip) + b * (round_trip - base)).clamp(-1, 1)
    assert torch.allclose(with_gate.image, expected, atol=1e-5)


def test_whole_image_statistics_are_the_same_at_every_pixel_and_old_descriptions_still_load():
    x, restored, round_trip = _images(2)
    local, whole = FidelityGate(FidelityConfig()), FidelityGate(FidelityConfig(image_stats=True))
    assert local.statistics(x, restored, round_trip).shape[1] == FEATURES == 6
    stats = whole.statistics(x, restored, round_trip)
    assert stats.shape == (2, FEATURES + IMAGE_FEATURES, 32, 32)
    assert torch.equal(stats[:, :FEATURES - 1], local.statistics(x, restored, round_trip)[:, :FEATURES - 1])
    extra = stats[:, FEATURES:]
    assert torch.equal(extra, extra[:, :, :1, :1].expand_as(extra))  # one value per image and feature
    assert not torch.allclose(extra[0], extra[1])  # ... that differs between images
    # a checkpoint written before image_stats existed describes its gate without it: local statistics only
    old = FidelityConfig(**{"hidden": 0, "small_window": 3, "large_window": 15})
    assert old.image_stats is False and old.standardise is False  # and before standardise: raw statistics
    assert "feature_mean" not in FidelityGate(old).state_dict()


def test_a_whole_image_gate_decides_once_per_photo_however_it_is_tiled():
    """With ``image_stats`` the gate runs once on the blended image (``finish``), not per tile: a gate that reads
    only the image-wide mean of ``|x - T|`` passes the same fraction of the input everywhere in a photo that is
    restored in several overlapping tiles, and the same in either size policy."""
    from rvar.inference import apply_any_size, restorer_fn, run_tiled

    plain = tiny_restorer().eval()
    gate = FidelityGate(FidelityConfig(image_stats=True))
    with torch.no_grad():
        gate.net[0].weight.zero_()
        gate.net[0].weight[0, FEATURES + 1] = 1.0  # a: the image-wide mean of log|x - T|
        gate.net[0].bias.copy_(torch.tensor([3.0, -30.0]))  # b shut: out = R + a (x - T)
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, gate)
    fn = restorer_fn(gated, torch.device("cpu"))
    side = plain.image_size
    g = torch.Generator().manual_seed(3)
    img = torch.rand(3, side * 2 - 5, side + 7, generator=g)  # several tiles, not multiples of the tile side
    img[:, : side // 2] = 0.5  # a flat band: tiles that on their own would see almost no loss
    out = apply_any_size(fn, img, side, "tile")
    both = run_tiled(fn, img, side)  # restored tiles and round trips, blended as apply_any_size blends them
    assert out.shape == img.shape and both.shape[0] == 6
    lost = img - both[3:]
    inside = (lost.abs() > 0.05) & (out > 0.01) & (out < 0.99)  # not clipped to the pixel range
    ratio = ((out - both[:3]) / lost)[inside]
    assert ratio.numel() > 100 and ratio.std() < 1e-3 and 0.05 < ratio.mean() < 0.95  # one a for the whole photo
    resized = apply_any_size(fn, img, side, "resize")
    assert resized.shape == img.shape and resized.min() >= 0 and resized.max() <= 1
    per_tile = gated.restore(to_signed(img[None, :, :side, :side]))  # a single tile still restores alone
    assert per_tile.image.shape == (1, 3, side, side)


def test_a_standardising_gate_reads_each_feature_in_its_own_units():
    """``standardise``: each statistic is shifted and scaled by the mean and spread of the images the stage set it
    from, so a feature far from zero (a log-mean near -3) no longer saturates the gate; until then it is the raw
    gate; a gate without it refuses the call."""
    x, restored, round_trip = _images(4)
    config = FidelityConfig(image_stats=True, standardise=True)
    gate, raw = FidelityGate(config), FidelityGate(FidelityConfig(image_stats=True))
    k = 2  # log-mean of |x - T| in the small window: about log(0.5) on these random images, far from 0 in its spread
    for g in (gate, raw):
        with torch.no_grad():
            g.net[0].weight.zero_()
            g.net[0].weight[0, k] = 4.0
            g.net[0].bias.zero_()
    stats = gate.statistics(x, restored, round_trip)
    assert torch.equal(gate.gates_from(stats)[0], raw.gates_from(stats)[0])  # not set yet: the identity
    feature = stats[:, k].double()
    gate.set_standardisation(stats)
    with torch.no_grad():
        a, _ = gate.gates(x, restored, round_trip)
        a_raw, _ = raw.gates(x, restored, round_trip)
    expected = torch.sigmoid(4.0 * (feature - feature.mean()) / feature.std())
    assert torch.allclose(a[:, 0].double(), expected, atol=1e-4)
    assert 0.3 < float(a.mean()) < 0.7 and float(a.min()) < 0.2 and float(a.max()) > 0.8  # both sides of 0.5
    assert float(a_raw.std()) < float(a.std()) / 2  # raw: pressed to one side
    with pytest.raises(ValueError, match="does not standardise"):
        raw.set_standardisation(stats)


def test_a_standardising_gate_travels_with_its_restorer(tmp_path):
    plain = tiny_restorer().eval()
    gate = FidelityGate(FidelityConfig(image_stats=True, standardise=True))
    x, restored, round_trip = _images(5)
    gate.set_standardisation(gate.statistics(x, restored, round_trip))
    with torch.no_grad():
        gate.net[0].weight.normal_(generator=torch.Generator().manual_seed(0))
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, gate).eval()
    path = save_checkpoint(tmp_path / "gated.ckpt", gated)
    ckpt = load_checkpoint(path, kinds=("restorer",))
    assert ckpt["model"]["init_args"]["gate"]["standardise"] is True
    loaded = build_restorer(ckpt, str(path)).eval()
    for name in ("feature_mean", "feature_std"):
        assert torch.equal(getattr(loaded.gate, name), getattr(gate, name))
    image = torch.rand(1, 3, plain.image_size, plain.image_size) * 2 - 1
    assert torch.equal(loaded.restore(image).image, gated.restore(image).image)


def test_the_image_switch_learns_per_label_trust_and_travels_with_its_restorer(tmp_path):
    from rvar.nn.fidelity import fit_switch

    config = FidelityConfig(hidden=4, image_stats=True, standardise=True, switch_classes=["none", "rain"])
    gate = FidelityGate(config)
    g = torch.Generator().manual_seed(0)
    # 40 images per label, their whole-image features in two clusters; on "rain" images the restorer's own output
    # is right (w = clean - R = 0), on "none" images the gates' correction is (w = c)
    features = torch.cat([torch.randn(40, IMAGE_FEATURES, generator=g) - 2, torch.randn(40, IMAGE_FEATURES, generator=g) + 2])
    labels = torch.cat([torch.zeros(40), torch.ones(40)]).long()
    labels[0] = -1  # an image of no listed label counts for the trusts only
    c2 = torch.rand(80, generator=g) * 0.01 + 0.01
    terms = torch.stack([c2, torch.where(labels == 1, 0.0, c2), torch.where(labels == 1, 0.0, c2)], dim=1)
    stats = torch.zeros(2, config.features, 8, 8)
    stats[:, FEATURES:] = torch.stack([features[5], features[45]])[:, :, None, None]
    before = gate.gates_from(stats)
    assert not gate.has_switch
    summary = fit_switch(gate, features, labels, terms, floor=4e-4)
    assert gate.has_switch and summary["accuracy"] > 0.9  # held-out (k-fold) accuracy on the labelled images
    assert summary["trust"]["rain"] > 0.9 and summary["trust"]["none"] < 0.1
    after = gate.gates_from(stats)
    for old, new in zip(before, after):  # the "none" image keeps its gates, the "rain" image drops them
        assert torch.allclose(new[0], old[0], atol=0.05) and bool((new[1] < 0.1 * old[1]).all())
    # a restorer carries the fitted switch: same output after a save and a load
    plain = tiny_restorer().eval()
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, gate).eval()
    path = save_checkpoint(tmp_path / "switched.ckpt", gated)
    ckpt = load_checkpoint(path, kinds=("restorer",))
    assert ckpt["model"]["init_args"]["gate"]["switch_classes"] == ["none", "rain"]
    loaded = build_restorer(ckpt, str(path)).eval()
    assert loaded.gate.has_switch
    image = torch.rand(1, 3, plain.image_size, plain.image_size) * 2 - 1
    assert torch.equal(loaded.restore(image).image, gated.restore(image).image)
    for bad in (dict(switch_classes=["none", "rain"]), dict(image_stats=True, standardise=True, switch_classes=["rain"]),
                dict(image_stats=True, standardise=True, switch_classes=["rain", "rain"])):
        with pytest.raises(ValueError, match="switch_classes"):
            FidelityConfig(**bad)


def test_a_switch_that_reads_the_input_learns_from_unrestored_images_and_travels_with_its_restorer(tmp_path):
    """switch_inputs "input": the classifier reads switch_features of the input alone, standardised by buffers of its
    own; images without restoration terms (NaN) teach the classifier but not the trusts."""
    from rvar.nn.fidelity import SWITCH_FEATURES, fit_switch, switch_features

    config = FidelityConfig(hidden=4, image_stats=True, standardise=True, switch_classes=["none", "haze"],
                            switch_inputs="input")
    assert config.to_dict()["switch_inputs"] == "input"
    assert "switch_inputs" not in FidelityConfig(image_stats=True, standardise=True,
                                                 switch_classes=["none", "haze"]).to_dict()  # described as before
    gate = FidelityGate(config)
    assert gate.switch_classifier[0].in_features == SWITCH_FEATURES
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(30, 3, 32, 32, generator=g) * 2 - 1
    hazy = 0.3 * (torch.rand(30, 3, 32, 32, generator=g) * 2 - 1) + 0.6  # washed out and bright
    images = torch.cat([clean, hazy])
    raw = switch_features(images)
    assert raw.shape == (60, SWITCH_FEATURES) and torch.isfinite(raw).all()
    with torch.no_grad():
        gate.switch_mean.copy_(raw.mean(0))
        gate.switch_std.copy_(raw.std(0).clamp_min(1e-3))
    labels = torch.cat([torch.zeros(30), torch.ones(30)]).long()
    c2 = torch.full((60,), 0.02)
    terms = torch.stack([c2, torch.where(labels == 1, 0.0, c2), torch.where(labels == 1, 0.0, c2)], dim=1)
    terms[::2] = float("nan")  # half the images were not restored: the classifier's only
    summary = fit_switch(gate, (raw - gate.switch_mean) / gate.switch_std, labels, terms, floor=4e-4)
    assert summary["restored"] == 30 and summary["accuracy"] > 0.9
    assert summary["trust"]["haze"] > 0.9 and summary["trust"]["none"] < 0.1
    stats = torch.zeros(2, config.features, 32, 32)
    with pytest.raises(ValueError, match="pass x"):
        gate.gates_from(stats)  # a fitted switch that reads the input needs it
    with torch.no_grad():
        a, b = gate.gates_from(stats, images[[0, 45]])
    assert float(a[1].max()) < 0.1 * float(a[0].min())  # the hazy photo drops its gates, the clean one keeps them
    plain = tiny_restorer().eval()
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, gate).eval()
    loaded = build_restorer(load_checkpoint(save_checkpoint(tmp_path / "s.ckpt", gated), kinds=("restorer",)), "s")
    assert torch.equal(loaded.gate.switch_mean, gate.switch_mean) and loaded.gate.config.switch_inputs == "input"
    image = torch.rand(1, 3, plain.image_size, plain.image_size) * 2 - 1
    assert torch.equal(loaded.eval().restore(image).image, gated.restore(image).image)
    with pytest.raises(ValueError, match="switch_inputs"):
        FidelityConfig(image_stats=True, standardise=True, switch_classes=["none", "haze"], switch_inputs="output")


def test_the_switch_can_trust_the_input_and_its_fit_prices_the_output_exactly(tmp_path):
    """switch_keep: a per-label trust in the input, kappa, moves the output back to the input (both gates
    (1 - kappa)(1 - s) a + kappa); switched_mse, which the trusts are fitted on, is the output's MSE exactly."""
    from rvar.nn.fidelity import SWITCH_FEATURES, blend, fit_switch, switch_features, switched_mse

    with pytest.raises(ValueError, match="switch_keep needs switch_classes"):
        FidelityConfig(image_stats=True, standardise=True, switch_keep=True)
    config = FidelityConfig(hidden=4, image_stats=True, standardise=True, switch_classes=["none", "haze"],
                            switch_inputs="input", switch_keep=True)
    assert config.to_dict()["switch_keep"] is True
    assert "switch_keep" not in FidelityConfig(image_stats=True, standardise=True).to_dict()  # as before
    gate = FidelityGate(config)
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(40, 3, 16, 16, generator=g) * 2 - 1
    x = clean.clone()
    x[20:] = 0.3 * x[20:] + 0.6  # the last 20 hazy; the first 20 clean photos, which the input restores exactly
    R = clean + 0.05 * torch.randn(40, 3, 16, 16, generator=g)  # the restorer: close on every image
    R[:20] = clean[:20] * 0.8  # but it dims the clean ones (the gates' correction alone cannot undo it)
    T = R + 0.1 * torch.randn(40, 3, 16, 16, generator=g)
    raw = switch_features(x)
    assert raw.shape[1] == SWITCH_FEATURES
    with torch.no_grad():
        gate.switch_mean.copy_(raw.mean(0))
        gate.switch_std.copy_(raw.std(0).clamp_min(1e-3))
        gate.set_standardisation(gate.statistics(x, R, T))
        a, b = gate.gates(x, R, T)
        c = blend(a, x - T) + blend(b, T - R)
        u, w = x - R, clean - R
        terms = torch.stack([(c * c).mean((1, 2, 3)), (c * w).mean((1, 2, 3)), (w * w).mean((1, 2, 3)),
                             (u * u).mean((1, 2, 3)), (c * u).mean((1, 2, 3)), (u * w).mean((1, 2, 3))], dim=1)
    labels = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    with pytest.raises(ValueError, match="needs 6 terms"):
        fit_switch(gate, (raw - gate.switch_mean) / gate.switch_std, labels, terms[:, :3], floor=4e-4)
    summary = fit_switch(gate, (raw - gate.switch_mean) / gate.switch_std, labels, terms, floor=4e-4)
    assert summary["keep"]["none"] > 0.9 and summary["keep"]["haze"] < 0.1 and summary["trust"]["haze"] > 0.9
    with torch.no_grad():
        out = gate(x, R, T)
        s, kappa = gate.trusts(gate.statistics(x, R, T), x)
        exact = switched_mse(terms, s, kappa)
    assert torch.allclose(exact, (out - clean).square().mean((1, 2, 3)), rtol=1e-4, atol=1e-7)
    assert float((out[:20] - x[:20]).abs().max()) < 0.2 * float((R[:20] - x[:20]).abs().max())  # back to the input
    assert float((out[20:] - R[20:]).abs().max()) < 0.1 * float((x[20:] - R[20:]).abs().max())  # the restorer's
    plain = tiny_restorer().eval()
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, gate).eval()
    loaded = build_restorer(load_checkpoint(save_checkpoint(tmp_path / "k.ckpt", gated), kinds=("restorer",)), "k")
    assert torch.equal(loaded.gate.switch_keep, gate.switch_keep)


def test_a_chroma_gate_takes_brightness_and_colour_from_different_sources(tmp_path):
    """chroma: four gates, (a, b) for each difference's brightness (mean over RGB) and for its colour."""
    from rvar.nn.fidelity import blend

    config = FidelityConfig(image_stats=True, standardise=True, chroma=True)
    assert config.to_dict()["chroma"] is True and "chroma" not in FidelityConfig().to_dict()
    gate = FidelityGate(config)
    x, R, T = _images(3)
    a, b = gate.gates(x, R, T)
    assert a.shape == b.shape == (2, 2, 32, 32)
    d = torch.randn(2, 3, 4, 4)
    only_brightness = blend(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1), d)
    assert torch.allclose(only_brightness, d.mean(1, keepdim=True).expand_as(d))
    assert torch.allclose(blend(torch.ones(1, 2, 1, 1), d), d)
    with torch.no_grad():  # a_brightness = b_brightness = 1, colour gates 0: the input's brightness, R's colour
        gate.net[-1].bias.copy_(torch.tensor([30.0, 30.0, -30.0, -30.0]))
        out = gate(x, R, T)
    assert torch.allclose(out.mean(1), x.mean(1), atol=1e-5)
    assert torch.allclose(out - out.mean(1, keepdim=True), R - R.mean(1, keepdim=True), atol=1e-5)
    plain = tiny_restorer().eval()
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, gate).eval()
    loaded = build_restorer(load_checkpoint(save_checkpoint(tmp_path / "c.ckpt", gated), kinds=("restorer",)), "c")
    assert loaded.gate.config.chroma
    image = torch.rand(1, 3, plain.image_size, plain.image_size) * 2 - 1
    assert torch.equal(loaded.eval().restore(image).image, gated.restore(image).image)


@pytest.mark.parametrize("shape", [(2, 1, 40, 33), (1, 1, 7, 5), (1, 1, 1, 1)])
def test_the_fast_filters_give_the_values_of_the_plain_ones(shape):
    """The dark channel's min filter (two doubling passes) and the |Laplacian| (shifted slices) are the square
    min-pool and the 3x3 convolution they replace, value for value: gates fitted before keep their meaning."""
    import torch.nn.functional as F

    from rvar.nn.fidelity import _detail, _min_filter

    t = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape) + shape[-1]))
    for side in (1, 3, 5, 15, 31):
        assert torch.equal(_min_filter(t, side), -F.max_pool2d(-t, side, 1, side // 2)), side
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    plain = F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), kernel).abs()
    assert torch.allclose(_detail(t), plain, atol=1e-6)


def _photo(side: int = 48) -> torch.Tensor:
    """A real photograph scikit-image ships (coffee), (1, 3, side, side) in [0, 1]."""
    import torch.nn.functional as F
    from skimage import data

    img = torch.from_numpy(data.coffee()).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(img, size=(side, side), mode="area")


def test_the_tone_curve_recovers_a_darkening_and_the_input_colour_keeps_its_hues():
    """tone_curve finds low light's ``k * u ** gamma`` from the dark input and a restored brightness; input_colour
    then gives the target's brightness exactly with the input's colours (here the clean photo's, near enough)."""
    from rvar.nn.fidelity import input_colour, tone_curve

    clean = _photo()
    dark = 0.3 * clean ** 2.2
    k, gamma = tone_curve(dark * 2 - 1, clean * 2 - 1)
    assert abs(float(gamma) - 2.2) < 0.25 and abs(float(k) - 0.3) < 0.06
    grey = clean.mean(1, keepdim=True).expand_as(clean)  # a restorer that lost every colour
    X, C = input_colour(dark * 2 - 1, grey * 2 - 1, smooth=1)
    assert torch.allclose(C.mean(1), (grey * 2 - 1).mean(1), atol=1e-5)  # the target's brightness, exactly
    colour = lambda t: t - t.mean(1, keepdim=True)
    err_before = float(colour(grey * 2 - 1).sub(colour(clean * 2 - 1)).abs().mean())
    err_after = float(colour(C).sub(colour(clean * 2 - 1)).abs().mean())
    assert err_after < 0.3 * err_before  # the input's hues back
    assert float((X - (clean * 2 - 1)).abs().mean()) < 0.08  # the input brought up: near the clean photo (4 %)


def test_the_colour_path_learns_per_label_shares_prices_them_exactly_and_travels(tmp_path):
    """colour: per label a share of the input's colour, fitted on the gated outputs (colour_terms: the MSE at any
    share, exactly); high where the restorer lost the colours the input still has, low where the input's are
    wrong."""
    from rvar.nn.fidelity import colour_terms, fit_colour, switch_features

    with pytest.raises(ValueError, match="colour needs switch_classes"):
        FidelityConfig(image_stats=True, standardise=True, colour=True)
    assert "colour" not in FidelityConfig().to_dict()
    config = FidelityConfig(image_stats=True, standardise=True, switch_classes=["low_light", "tinted"],
                            switch_inputs="input", colour=True)
    assert config.to_dict()["colour"] is True
    gate = FidelityGate(config)
    with torch.no_grad():
        gate.net[-1].bias.fill_(-30.0)  # gates shut: the output is the restorer's
    g = torch.Generator().manual_seed(0)
    clean = (_photo(32).expand(16, -1, -1, -1) * (0.7 + 0.3 * torch.rand(16, 3, 1, 1, generator=g))).clamp(0, 1)
    x = 0.3 * clean ** 2.2  # the first 8 dark
    x[8:] = clean[8:].flip(1)  # the last 8: the input's colours swapped (R <-> B), its brightness right
    R = clean.mean(1, keepdim=True).expand_as(clean).clone()  # the restorer: the right brightness, no colour
    x, R, clean = x * 2 - 1, R * 2 - 1, clean * 2 - 1
    raw = switch_features(x)
    with torch.no_grad():
        gate.switch_mean.copy_(raw.mean(0))
        gate.switch_std.copy_(raw.std(0).clamp_min(1e-3))
        gate.set_standardisation(gate.statistics(x, R, R))
    gate.switch_fitted.fill_(1.0)
    with torch.no_grad():  # a classifier that knows the labels, trust in the restorer 1: the output is R
        gate.switch_classifier[-1].weight.zero_()
        gate.switch_classifier[-1].bias.zero_()
        gate.switch_trust.fill_(30.0)
        probabilities = torch.cat([torch.tensor([[1.0, 0.0]]).expand(8, 2), torch.tensor([[0.0, 1.0]]).expand(8, 2)])
        terms = colour_terms(x, R, clean)
    shares = fit_colour(gate, probabilities, terms, floor=4e-4)
    assert shares["low_light"] > 0.9 and shares["tinted"] < 0.1
    with torch.no_grad():
        gate.switch_colour.copy_(torch.tensor([1.0, -0.5]))  # any shares: the output's MSE is what the terms say
        out = gate(x, R, R)
        w = gate.colour_share(gate.statistics(x, R, R), x)  # the classifier's 50/50 here
        v2, ev, e2 = terms.unbind(1)
        assert torch.allclose(e2 + 2 * w * ev + w * w * v2, (out - clean).square().mean((1, 2, 3)), rtol=1e-4)
        assert torch.equal(gate(x, R, R, weight=0.0), R)  # weight 0: the restorer's output, colour path off too
    plain = tiny_restorer().eval()
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner, gate).eval()
    loaded = build_restorer(load_checkpoint(save_checkpoint(tmp_path / "w.ckpt", gated), kinds=("restorer",)), "w")
    assert loaded.gate.has_colour and torch.equal(loaded.gate.switch_colour, gate.switch_colour)
    image = torch.rand(1, 3, plain.image_size, plain.image_size) * 2 - 1
    assert torch.equal(loaded.eval().restore(image).image, gated.restore(image).image)


def test_a_switch_can_read_the_inputs_highlights_and_old_switch_files_read_as_before():
    """switch_highlights: the input switch reads a 9th statistic, the 99 % brightness quantile; a photo darkened as
    low light does has none left, the photo itself has; without the flag the switch reads the 8 of files before."""
    from rvar.nn.fidelity import SWITCH_FEATURES, highlight_level, switch_features

    photo = _photo(64) * 2 - 1
    dark = (0.4 * ((photo + 1) / 2) ** 2.0) * 2 - 1
    assert float(highlight_level(photo)) > 0.6 > 0.4 >= float(highlight_level(dark))
    flat = torch.linspace(-1, 1, 101).view(1, 1, 1, 101).expand(1, 3, 1, 101)
    assert abs(float(highlight_level(flat)) - 0.99) < 0.011  # the quantile of 0, 0.01, ..., 1
    assert switch_features(photo).shape[1] == SWITCH_FEATURES
    assert torch.equal(switch_features(photo, highlights=True)[:, :SWITCH_FEATURES], switch_features(photo))
    with pytest.raises(ValueError, match="switch_highlights needs switch_inputs"):
        FidelityConfig(image_stats=True, standardise=True, switch_classes=["a", "b"], switch_highlights=True)
    config = FidelityConfig(image_stats=True, standardise=True, switch_classes=["a", "b"], switch_inputs="input",
                            switch_highlights=True)
    assert config.to_dict()["switch_highlights"] is True
    assert "switch_highlights" not in FidelityConfig().to_dict()
    gate = FidelityGate(config)
    assert gate.switch_mean.shape == (SWITCH_FEATURES + 1,) and gate.switch_classifier[0].in_features == 9
    assert gate.switch_inputs(torch.zeros(1, 1), photo).shape == (1, SWITCH_FEATURES + 1)
    old = FidelityGate(FidelityConfig(image_stats=True, standardise=True, switch_classes=["a", "b"],
                                      switch_inputs="input"))
    assert old.switch_mean.shape == (SWITCH_FEATURES,) and old.switch_classifier[0].in_features == SWITCH_FEATURES
