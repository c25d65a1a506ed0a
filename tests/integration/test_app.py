"""``rvar app`` served on a free localhost port and driven with Gradio's own client: two checkpoints side by side
(the tiny reference restorer and a tiny NAFNet), a degradation from the registry, a corrupt upload."""
from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rvar.cli import main
from tests.tiny_reference import FIXTURES, save_tiny_restorer

REASON = "the app needs the optional extra: pip install 'rvar[app]'"
gradio_client = pytest.importorskip("gradio_client", reason=REASON)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch

    from rvar.commands.app import start
    from rvar.nn.checkpoints import save_checkpoint
    from rvar_plugins.baselines.nafnet import NAFNetConfig
    from rvar_plugins.baselines.regression import RegressionRestorer

    folder = tmp_path_factory.mktemp("app")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")  # uploads and outputs stay in the test's folder
    pytest.importorskip("gradio", reason=REASON)
    restorer = save_tiny_restorer(folder / "tiny.ckpt")
    torch.manual_seed(0)
    nafnet = RegressionRestorer(network=NAFNetConfig(width=4, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,)))
    baseline = save_checkpoint(folder / "nafnet.ckpt", nafnet)
    args = argparse.Namespace(ckpt=[str(restorer), str(baseline)], host="127.0.0.1", port=free_port(),
                              size_policy="tile", batch_size=4, device="cpu", precision="fp32", steps=None)
    page = start(args, folder / "results", block=False)
    assert page.local_url.startswith("http://127.0.0.1:")  # localhost only by default
    client = gradio_client.Client(page.local_url, verbose=False)
    yield client, folder
    page.close()
    if previous is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_restores_an_odd_sized_photo_with_both_models(served, tmp_path):
    client, _ = served
    photo = tmp_path / "odd.png"
    Image.open(FIXTURES / "tiny_degraded_0.png").convert("RGB").resize((77, 53)).save(photo)
    status, *columns = client.predict(gradio_client.handle_file(str(photo)), "none", "", 0, ["tiny", "nafnet"],
                                      api_name="/restore")
    assert status.startswith("Restored 77 x 53 px"), status
    assert len(columns) == 6  # per model: timing, slider, download
    for name, (timing, slider, download) in zip(("tiny", "nafnet"), (columns[:3], columns[3:])):
        assert timing.startswith(f"**{name}**: ") and timing.endswith(" s")
        before, after = slider
        assert Image.open(download).size == (77, 53) and Path(download).name == f"odd_{name}.png"
        assert pixels(after).shape == pixels(before).shape == (53, 77, 3)
        assert np.abs(pixels(after) - pixels(download)).max() <= 1  # the slider shows the file offered
    assert np.abs(pixels(columns[1][0]) - pixels(photo)).max() <= 1  # "before" is the upload, undegraded


def test_a_degradation_with_options_is_applied_first(served, tmp_path):
    client, _ = served
    clean = FIXTURES / "tiny_clean_0.png"
    status, *columns = client.predict(gradio_client.handle_file(str(clean)), "low_light", "{gain: 0.2, gamma: 1}", 3,
                                      ["nafnet"], api_name="/restore")
    assert "degraded with low_light" in status, status
    assert columns[0] == "**tiny**: not selected" and columns[2] is None
    before = pixels(columns[4][0])
    assert before.mean() < 0.4 * pixels(clean).mean()  # gain 0.2: much darker than the clean photo
    help_text = client.predict("gaussian_noise", api_name="/degradation_help")
    assert "sigma" in help_text


def test_bad_files_and_options_are_messages_in_the_page(served, tmp_path):
    client, _ = served
    broken = tmp_path / "broken.png"
    broken.write_bytes((FIXTURES / "tiny_clean_0.png").read_bytes()[:150])
    status, *columns = client.predict(gradio_client.handle_file(str(broken)), "none", "", 0, ["tiny"],
                                      api_name="/restore")
    assert status.startswith("**Could not restore:**") and "broken.png" in status, status
    assert "Traceback" not in status and all(c is None for c in columns if not isinstance(c, str))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    status, *_ = client.predict(gradio_client.handle_file(str(text)), "none", "", 0, ["tiny"], api_name="/restore")
    assert status.startswith("**Could not restore:**"), status
    status, *_ = client.predict(gradio_client.handle_file(str(FIXTURES / "tiny_clean_0.png")), "gaussian_noise",
                                "sigma: [", 0, ["tiny"], api_name="/restore")
    assert status.startswith("**Could not restore:**") and "YAML" in status, status


def test_missing_gradio_is_one_line_with_the_extra(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app", "--ckpt", "missing.ckpt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "rvar: error: rvar app needs Gradio: pip install 'rvar[app]'"
