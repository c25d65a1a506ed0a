"""Issue #14: `rvar restore` given hostile or unlucky inputs and outputs (real files, real subprocesses).

Each case ends on one line per problem, never a traceback, with the exit status the README promises:
0 fine, 1 some inputs skipped, 2 refused before any work, 143 SIGTERM."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tiny_reference import FIXTURES
from test_restore_cli import tiny_ckpt  # noqa: F401 - the module-scoped tiny restorer checkpoint


def rvar(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvar", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``rvar: error:`` line of a refused command (exit 2, nothing else on stderr)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("rvar: error: ")
    return proc.stderr


def photo(path: Path, size=(40, 32), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


def test_a_bomb_is_passed_over_exif_is_applied_and_gif_becomes_png(tiny_ckpt, tmp_path):
    """Items 2, 3 and 6, on one folder: the bomb is skipped with the limit and how to raise it, the others are
    restored; an Orientation=6 JPEG comes back upright; a GIF (in a folder or named) is written as PNG, said."""
    src = tmp_path / "in"
    photo(src / "normal.png")
    png_declaring(src / "bomb.png", 20000, 20000)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.open(photo(tmp_path / "raw.png", size=(96, 48))).save(src / "sideways.jpg", exif=exif.tobytes())
    Image.open(photo(tmp_path / "g.png", size=(30, 20))).convert("P").save(src / "anim.gif")
    named_gif = tmp_path / "named.gif"
    Image.open(photo(tmp_path / "n.png", size=(20, 30))).convert("P").save(named_gif)
    out = tmp_path / "out"
    proc = rvar("restore", src, named_gif, "--ckpt", tiny_ckpt, "-o", out, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    bomb_lines = [line for line in proc.stderr.splitlines() if line.startswith("rvar: skipped:")]
    assert len(bomb_lines) == 1 and "RVAR_MAX_IMAGE_PIXELS" in bomb_lines[0], proc.stderr
    assert Image.open(out / "normal.png").size == (40, 32)
    upright = Image.open(out / "sideways.jpg")
    assert upright.size == (48, 96) and upright.getexif().get(0x0112, 1) == 1
    assert Image.open(out / "anim.png").size == (30, 20) and Image.open(out / "named.png").size == (20, 30)
    assert not list(out.glob("*.gif"))
    assert sum("writing anim.png" in line or "writing named.png" in line for line in proc.stderr.splitlines()) == 2


def test_raising_the_pixel_limit_lets_a_large_image_through(tmp_path):
    from rvar.errors import ImageError
    from rvar.io import read_image

    big = photo(tmp_path / "big.png", size=(300, 200))
    os.environ["RVAR_MAX_IMAGE_PIXELS"] = "50000"
    try:
        with pytest.raises(ImageError, match="RVAR_MAX_IMAGE_PIXELS=60000"):
            read_image(big)
        os.environ["RVAR_MAX_IMAGE_PIXELS"] = "60000"
        assert read_image(big).rgb.shape == (3, 200, 300)
    finally:
        del os.environ["RVAR_MAX_IMAGE_PIXELS"]


def test_name_collisions_are_refused_before_any_work_and_a_repeated_input_is_done_once(tiny_ckpt, tmp_path):
    a, b = photo(tmp_path / "dA" / "x.png", seed=1), photo(tmp_path / "dB" / "x.png", seed=2)
    out = tmp_path / "out"
    for inputs in ([a.parent, b.parent], [a, b]):
        line = one_error_line(rvar("restore", *inputs, "--ckpt", tiny_ckpt, "-o", out, cwd=tmp_path))
        assert str(a) in line and str(b) in line
        assert not (out / "x.png").exists()
    gif = tmp_path / "dA" / "x.gif"  # would become out/x.png next to x.png's result
    Image.open(a).convert("P").save(gif)
    assert "x.gif" in one_error_line(rvar("restore", a.parent, "--ckpt", tiny_ckpt, "-o", out, cwd=tmp_path))
    gif.unlink()

    proc = rvar("restore", a, a, a.parent, "--ckpt", tiny_ckpt, "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "restored" in proc.stderr and " 1 image(s)" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["x.png"]


def test_an_unwritable_output_is_refused_before_any_work(tiny_ckpt, tmp_path):
    img = photo(tmp_path / "a.png")
    existing = tmp_path / "existing_file"
    existing.write_text("not a folder")
    for output in (existing, existing / "sub"):
        line = one_error_line(rvar("restore", img, "--ckpt", tiny_ckpt, "-o", output, cwd=tmp_path))
        assert str(existing) in line and "-o" in line
    assert existing.read_text() == "not a folder"
    if os.geteuid() == 0:
        read_only = Path("/sys/rvar_test_output")  # sysfs: even root cannot create folders there
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        read_only = locked / "out"
    if os.access(read_only.parent, os.W_OK) and os.geteuid() != 0:
        pytest.skip("no unwritable folder available")
    assert str(read_only) in one_error_line(rvar("restore", img, "--ckpt", tiny_ckpt, "-o", read_only, cwd=tmp_path))


def test_an_output_folder_inside_the_input_folder_is_left_out(tiny_ckpt, tmp_path):
    src = tmp_path / "photos"
    photo(src / "a.png")
    for _ in range(2):
        proc = rvar("restore", src, "--ckpt", tiny_ckpt, "-o", src / "restored", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png")) == ["a.png", "restored/a.png"]


def test_sigterm_stops_restore_between_files_and_says_how_many(tiny_ckpt, tmp_path):
    src = tmp_path / "many"
    first = photo(src / "img_000.png", size=(64, 64))  # the tiny model's native size: one pass per image
    for number in range(1, 200):
        (src / f"img_{number:03d}.png").write_bytes(first.read_bytes())
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "rvar", "restore", str(src), "--ckpt", str(tiny_ckpt),
                                "-o", str(out)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # start-up takes minutes on a loaded 2-core machine
    while not list(out.glob("*.png")):
        assert process.poll() is None and time.monotonic() < deadline, "restore ended or stalled before an output"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "terminated" in stderr
    done = [line for line in stderr.splitlines() if "stopped after" in line]
    assert len(done) == 1 and "of 200 image(s)" in done[0], stderr
    written = len(list(out.glob("*.png")))
    assert f"stopped after {written} of" in done[0]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no hidden temp file left
    for path in out.glob("*.png"):
        assert Image.open(path).size == (64, 64)


def test_a_random_bytes_checkpoint_says_what_the_file_is_not(tmp_path):
    bad = tmp_path / "random.ckpt"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    line = one_error_line(rvar("restore", photo(tmp_path / "a.png"), "--ckpt", bad, "-o", tmp_path / "o",
                               cwd=tmp_path))
    assert str(bad) in line and "not a PyTorch checkpoint" in line and "Weights only" not in line


def test_lightning_configuration_errors_are_one_line(tmp_path, rvar_data_home):
    config = Path(__file__).resolve().parents[2] / "experiments" / "tiny" / "tokenizer.yaml"
    env = {**os.environ, "RVAR_DATA_HOME": str(rvar_data_home), "PYTHONWARNINGS": "ignore"}
    proc = rvar("fit", "--config", config, "--trainer.max_steps=-5", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rvar: error:")]
    assert len(errors) == 1 and "max_steps" in errors[0]  # Lightning's own log lines (seed, MLflow) may precede
