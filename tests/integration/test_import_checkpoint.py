"""`rvar import-checkpoint` on files with the published shapes (random values) and on broken files.

The key manifests in tests/fixtures/*.keys.json list every tensor (name, shape, dtype) of VAR's
vae_ch160v4096z32.pth and var_d16.pth and RestoreVAR's restorevar.pth.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rvar.cli import main
from rvar.nn.checkpoints import build_restorer, build_tokenizer, load_checkpoint
from rvar.nn.tokenizer import TokenizerConfig
from tests.tiny_reference import FIXTURES

DTYPES = {"float32": torch.float32, "int64": torch.int64, "complex64": torch.complex64}


def fake_file(manifest: str, path: Path, drop=(), extra=None, reshape=None) -> Path:
    """A file with the manifest's keys and shapes; values random (floats) or zero (ints)."""
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, spec in json.loads((FIXTURES / manifest).read_text()).items():
        if key in drop:
            continue
        shape = reshape.get(key, spec["shape"]) if reshape else spec["shape"]
        dtype = DTYPES[spec["dtype"]]
        if dtype == torch.float32:
            sd[key] = torch.empty(shape).normal_(0, 0.02, generator=gen)
        else:
            sd[key] = torch.zeros(shape, dtype=dtype)
    sd.update(extra or {})
    torch.save(sd, path)
    return path


@pytest.fixture(autouse=True)
def _free_disk(tmp_path):
    """Published-size checkpoints take gigabytes: each test's files go when it ends (CI disks can be small)."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def official_vae(tmp_path_factory) -> Path:
    return fake_file("vae_ch160v4096z32.keys.json", tmp_path_factory.mktemp("vae") / "vae_ch160v4096z32.pth")


@pytest.mark.slow
def test_official_tokenizer_shapes_import(official_vae, tmp_path, capsys):
    out = tmp_path / "vae.ckpt"
    assert main(["import-checkpoint", "--vae", str(official_vae), "-o", str(out)]) == 0
    ckpt = load_checkpoint(out, kinds=["tokenizer"])
    assert (ckpt["rvar_format"], ckpt["model"]["class_path"]) == (2, "rvar.nn.tokenizer.VQVAE")
    assert TokenizerConfig(**ckpt["model"]["init_args"]["config"]) == TokenizerConfig.vq_f16_256()
    vae = build_tokenizer(ckpt)
    src = torch.load(official_vae, weights_only=True)
    torch.testing.assert_close(vae.decoder.conv_out.weight, src["decoder.conv_out.weight"])
    assert "tokenizer: V=4096, Cvae=32, ch=160" in capsys.readouterr().err


@pytest.mark.slow
def test_var_d16_initialises_a_512px_prior(official_vae, tmp_path, capsys):
    var = fake_file("var_d16.keys.json", tmp_path / "var_d16.pth")
    out = tmp_path / "init.ckpt"
    assert main(["import-checkpoint", "--vae", str(official_vae), "--var", str(var), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "dropped" in err and "pos_1LC" in err and "ada_lin" in err and "created" in err and "cross_attn" in err
    ckpt = load_checkpoint(out, kinds=["prior"])
    assert ckpt["model"]["init_args"]["prior"]["patch_nums"] == [1, 2, 3, 4, 6, 9, 13, 18, 24, 32]
    assert ckpt["model"]["init_args"]["refiner"] is None
    restorer = build_restorer(ckpt)
    src = torch.load(var, weights_only=True)
    torch.testing.assert_close(restorer.prior.blocks[3].attn.mat_qkv.weight, src["blocks.3.attn.mat_qkv.weight"])
    torch.testing.assert_close(restorer.prior.lvl_embed.weight, src["lvl_embed.weight"])  # 10 scales both
    assert float(restorer.prior.blocks[0].cross_attn.gain) == 0.0 and float(restorer.prior.global_embed_gain) == 0.0
    assert restorer.refiner is None


@pytest.mark.slow
def test_restorevar_loads_strictly_into_a_restorer(official_vae, tmp_path):
    rv = fake_file("restorevar_d16_512.keys.json", tmp_path / "restorevar.pth")
    out = tmp_path / "restorevar.ckpt"
    assert main(["import-checkpoint", "--vae", str(official_vae), "--var", str(rv), "-o", str(out)]) == 0
    restorer = build_restorer(load_checkpoint(out, kinds=["restorer"]), require_refiner=True)
    n_prior = sum(p.numel() for p in restorer.prior.parameters())
    n_refiner = sum(p.numel() for p in restorer.refiner.parameters())
    assert n_refiner == 22_967_616
    assert n_prior + n_refiner == 296_953_713  # the published parameter count of restorevar.pth


def _run(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvar", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("problem", ["missing", "unexpected", "misshaped", "not_torch", "heads", "patch_nums"])
def test_broken_files_give_one_line_and_leave_nothing(problem, tmp_path):
    vae = str(FIXTURES / "tiny_vae.pth")
    rv_sd = torch.load(FIXTURES / "tiny_restorevar.pth", weights_only=True)
    args = ["--patch-nums", "1,2,3,4", "--heads", "2", "--refiner-heads", "2"]
    if problem == "missing":
        rv_sd.pop("blocks.1.ffn.fc2.weight")
    elif problem == "unexpected":
        rv_sd["blocks.0.attn.extra.weight"] = torch.zeros(3)
    elif problem == "misshaped":
        rv_sd["head.weight"] = torch.zeros(65, 128)
    elif problem == "heads":
        args[args.index("--heads") + 1] = "4"
    elif problem == "patch_nums":
        args[1] = "1,2,4"
    path = tmp_path / "rv.pth"
    if problem == "not_torch":
        path.write_text("this is not a checkpoint")
    else:
        torch.save(rv_sd, path)
    out = tmp_path / "out" / "x.ckpt"
    proc = _run(["import-checkpoint", "--vae", vae, "--var", str(path), *args, "-o", str(out)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rvar: error:") and "Traceback" not in proc.stderr
    assert str(path) in lines[0]
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temp file left either


def test_tokenizer_file_passed_as_restorer_is_refused(tmp_path):
    ckpt = tmp_path / "t.ckpt"
    assert _run(["import-checkpoint", "--vae", str(FIXTURES / "tiny_vae.pth"), "--patch-nums", "1,2,3,4", "-o",
                 str(ckpt)], tmp_path).returncode == 0
    png = FIXTURES / "tiny_degraded_0.png"
    proc = _run(["restore", str(png), "--ckpt", str(ckpt), "-o", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 2 and "tokenizer checkpoint, not a restorer" in proc.stderr
    assert not (tmp_path / "out").exists()
