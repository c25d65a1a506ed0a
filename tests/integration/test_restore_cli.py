"""`rvar reconstruct` and `rvar restore` end to end on real PNG files (subprocesses, real checkpoints)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tiny_reference import FIXTURES


def rvar(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvar", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def max_diff(a: Path, b: Path) -> int:
    return int(np.abs(np.asarray(Image.open(a), dtype=int) - np.asarray(Image.open(b), dtype=int)).max())


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    proc = rvar("import-checkpoint", "--vae", FIXTURES / "tiny_vae.pth", "--var", FIXTURES / "tiny_restorevar.pth",
                "--patch-nums", "1,2,3,4", "--heads", "2", "--refiner-heads", "2", "-o", folder / "tiny.ckpt", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "tiny.ckpt"


def test_restore_reproduces_the_reference_within_one_level(tiny_ckpt, tmp_path):
    inputs = [FIXTURES / "tiny_degraded_0.png", FIXTURES / "tiny_degraded_1.png"]
    proc = rvar("restore", *inputs, "--ckpt", tiny_ckpt, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for i in range(2):
        assert max_diff(tmp_path / "out" / f"tiny_degraded_{i}.png", FIXTURES / f"tiny_restored_{i}.png") <= 1


def test_reconstruct_reproduces_the_reference_and_prints_psnr(tmp_path):
    ckpt = tmp_path / "t.ckpt"
    assert rvar("import-checkpoint", "--vae", FIXTURES / "tiny_vae.pth", "--patch-nums", "1,2,3,4", "-o", ckpt,
                cwd=tmp_path).returncode == 0
    proc = rvar("reconstruct", FIXTURES / "tiny_clean_0.png", "--ckpt", ckpt, "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out" / "tiny_clean_0.png"
    assert Image.open(out).size == (64, 64)
    assert max_diff(out, FIXTURES / "tiny_recon_0.png") <= 1
    assert "PSNR" in proc.stdout and "mean" in proc.stdout


def test_any_size_and_mode_come_back_the_same_and_corrupt_files_are_skipped(tiny_ckpt, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rgb = np.asarray(Image.open(FIXTURES / "tiny_degraded_0.png").convert("RGB").resize((77, 53)))
    Image.fromarray(rgb).save(src / "odd.png")
    Image.fromarray(rgb[..., 0]).save(src / "grey.png")
    alpha = np.linspace(0, 255, 77 * 53).reshape(53, 77, 1).astype(np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], -1), mode="RGBA").save(src / "sub" / "alpha.png")
    Image.fromarray(rgb[:20, :30]).save(src / "tiny.jpg")
    (src / "broken.png").write_bytes((FIXTURES / "tiny_degraded_1.png").read_bytes()[:200])
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    proc = rvar("restore", src, "--ckpt", tiny_ckpt, "-o", out, cwd=tmp_path)
    assert proc.returncode == 1
    skipped = [line for line in proc.stderr.splitlines() if "broken.png" in line]
    assert len(skipped) >= 1 and "Traceback" not in proc.stderr
    assert Image.open(out / "odd.png").size == (77, 53) and Image.open(out / "odd.png").mode == "RGB"
    assert Image.open(out / "grey.png").mode == "L" and Image.open(out / "grey.png").size == (77, 53)
    restored_alpha = Image.open(out / "sub" / "alpha.png")
    assert restored_alpha.mode == "RGBA" and restored_alpha.size == (77, 53)
    assert np.array_equal(np.asarray(restored_alpha)[..., 3], alpha[..., 0])
    assert Image.open(out / "tiny.jpg").size == (30, 20)
    assert not (out / "broken.png").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # inputs untouched


def test_resize_policy_and_refusing_to_overwrite_inputs(tiny_ckpt, tmp_path):
    img = tmp_path / "a.png"
    Image.open(FIXTURES / "tiny_degraded_0.png").resize((100, 90)).save(img)
    proc = rvar("restore", img, "--ckpt", tiny_ckpt, "-o", tmp_path / "o", "--size-policy", "resize", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "o" / "a.png").size == (100, 90)
    before = img.read_bytes()
    proc = rvar("restore", img, "--ckpt", tiny_ckpt, "-o", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2 and "overwrite" in proc.stderr and img.read_bytes() == before


def test_not_a_checkpoint_gives_one_line(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 100)
    proc = rvar("restore", FIXTURES / "tiny_degraded_0.png", "--ckpt", bad, "-o", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad.ckpt" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_gated_checkpoint_uses_its_gate_unless_fidelity_is_zero(tiny_ckpt, tmp_path):
    """A restorer with a learned fidelity path (rvar.nn.fidelity): by default the gate passes input detail;
    ``--fidelity 0`` gives the published output exactly; out-of-range weights are one-line errors."""
    import torch

    from rvar.nn.checkpoints import build_restorer, load_checkpoint, save_checkpoint
    from rvar.nn.fidelity import FidelityConfig, FidelityGate
    from rvar.nn.restorer import Restorer

    plain = build_restorer(load_checkpoint(tiny_ckpt), str(tiny_ckpt))
    gated = Restorer.from_networks(plain.tokenizer, plain.prior, plain.refiner,
                                   FidelityGate(FidelityConfig(image_stats=True)))  # applied to the whole image
    with torch.no_grad():
        gated.gate.net[-1].bias.fill_(30.0)  # both gates open: the input comes back
    save_checkpoint(tmp_path / "gated.ckpt", gated)
    image = FIXTURES / "tiny_degraded_0.png"
    for name, extra in (("gated", []), ("zero", ["--fidelity", "0"])):
        proc = rvar("restore", image, "--ckpt", tmp_path / "gated.ckpt", "-o", tmp_path / name, *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert max_diff(tmp_path / "gated" / image.name, image) <= 1
    assert max_diff(tmp_path / "zero" / image.name, FIXTURES / "tiny_restored_0.png") <= 1
    proc = rvar("restore", image, "--ckpt", tmp_path / "gated.ckpt", "-o", tmp_path / "bad", "--fidelity", "1.5",
                cwd=tmp_path)
    assert proc.returncode != 0 and "--fidelity must be between 0 and 1" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "bad").exists()
