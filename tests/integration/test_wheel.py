"""A wheel install runs without the checkout: ``rvar fit`` finds lightning_config.yaml, the demo its tiny configs,
``rvar plugins`` the built-ins (through the wheel's own ``rvar.plugins`` entry point)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "lightning_config.yaml", "experiments", "rvar", "rvar_plugins")
CHECK = """
import rvar, rvar.configs
from rvar.demo.runner import SHIPPED_TOKENIZER, STAGES
assert rvar.__file__.startswith({target!r}), rvar.__file__
assert all(stage.config_path.is_file() for stage in STAGES), [str(s.config_path) for s in STAGES]
assert SHIPPED_TOKENIZER.is_file() and str(SHIPPED_TOKENIZER).startswith({target!r}), SHIPPED_TOKENIZER
print(len(list((rvar.configs.root() / "experiments" / "tiny").glob("*.yaml"))))
"""


def _run(args, cwd, env=None):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_wheel_install_runs_from_any_folder(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():  # symlinks=True: rvar/configs links to the top-level configs, as in git
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)], tmp_path)
    wheel = next((tmp_path / "dist").glob("rvar-*.whl"))
    target = tmp_path / "target"
    _run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    # -S: no site-packages .pth files, so the checkout's editable install cannot answer; dependencies come
    # from the site-packages folder as a plain path after the wheel's target
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    python = [sys.executable, "-S"]
    printed = _run([*python, "-m", "rvar", "fit", "--print_config"], work, env)
    assert "rvar.lit.tracking.RVARMLFlowLogger" in printed  # set by lightning_config.yaml, not by any default
    assert int(_run([*python, "-c", CHECK.format(target=str(target))], work, env)) >= 6
    listed = _run([*python, "-m", "rvar", "plugins", "--kind", "attention"], work, env)
    assert "l2norm" in listed and "built-in" in listed
