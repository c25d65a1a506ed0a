"""The `rvar` command, run as a real subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rvar.registry import DEGRADATIONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def rvar(*args, env_extra=None, cwd=None):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("RVAR_DEBUG", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "rvar", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("rvar: error:")]


def test_help_lists_every_command():
    for result in (rvar(), rvar("--help")):
        assert result.returncode == 0
        for name in ("fit", "validate", "test", "predict", "plugins", "degrade"):
            assert f"  {name} " in result.stdout


def _make_third_party_plugin(root: Path) -> None:
    (root / "rvar_hello_plugin.py").write_text(
        "import torch\n"
        "from rvar.registry import register_degradation\n\n"
        "@register_degradation('invert_hello')\n"
        "def invert(images, generator):\n"
        "    \"\"\"Invert the colours (a third-party example).\"\"\"\n"
        "    return (1 - images).clamp(0, 1)\n"
    )
    dist = root / "rvar_hello-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rvar-hello\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rvar.plugins]\nhello = rvar_hello_plugin\n")
    (dist / "top_level.txt").write_text("rvar_hello_plugin\n")
    (dist / "RECORD").write_text("rvar_hello_plugin.py,,\n")


def test_plugins_lists_builtins_and_third_party(tmp_path):
    _make_third_party_plugin(tmp_path)
    result = rvar("plugins", env_extra={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    for name in ("rain", "haze", "mixed", "fog"):
        assert f"  {name} " in result.stdout
    line = next(line for line in result.stdout.splitlines() if "invert_hello" in line)
    assert "rvar-hello" in line or "rvar_hello" in line
    assert "Invert the colours" in line
    assert "built-in" in next(line for line in result.stdout.splitlines() if " rain " in line)
    only_blur = rvar("plugins", "--kind", "degradations", "*blur")
    assert only_blur.returncode == 0 and "motion_blur" in only_blur.stdout and " rain " not in only_blur.stdout


def test_degrade_writes_every_builtin_and_a_contact_sheet(tmp_path):
    names = DEGRADATIONS.list()
    result = rvar("degrade", FIXTURES / "tiny_clean_0.png", FIXTURES / "tiny_clean_1.png",
                  "--degradations", "all", "-o", tmp_path / "out", "--seed", "3")
    assert result.returncode == 0, result.stderr
    for name in names:
        assert sorted(p.name for p in (tmp_path / "out" / name).iterdir()) == ["tiny_clean_0.png",
                                                                                "tiny_clean_1.png"]
    assert (tmp_path / "out" / "contact_sheet.png").stat().st_size > 1000


def test_degrade_reports_a_corrupt_input_and_goes_on(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes((FIXTURES / "tiny_clean_0.png").read_bytes()[:100])
    result = rvar("degrade", FIXTURES / "tiny_clean_0.png", bad, "-d", "rain,jpeg", "-o", tmp_path / "out")
    assert result.returncode != 0
    errors = _error_lines(result)
    assert len(errors) == 1 and "broken.png" in errors[0] and "Traceback" not in result.stderr
    assert (tmp_path / "out" / "rain" / "tiny_clean_0.png").is_file()
    assert not (tmp_path / "out" / "rain" / "broken.png").exists()


def test_degrade_unknown_name_writes_nothing(tmp_path):
    result = rvar("degrade", FIXTURES / "tiny_clean_0.png", "-d", "rain,nope", "-o", tmp_path / "out")
    assert result.returncode == 2
    errors = _error_lines(result)
    assert len(errors) == 1 and "nope" in errors[0] and "rain" in errors[0]
    assert not (tmp_path / "out").exists()


def test_degrade_refuses_to_overwrite_inputs(tmp_path):
    (tmp_path / "rain").mkdir()
    image = tmp_path / "rain" / "x.png"
    image.write_bytes((FIXTURES / "tiny_clean_0.png").read_bytes())
    before = image.read_bytes()
    result = rvar("degrade", image, "-d", "rain", "-o", tmp_path)
    assert result.returncode == 2 and "overwrite" in result.stderr
    assert image.read_bytes() == before


def test_broken_yaml_config_is_one_line(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("trainer:\n  max_epochs: [1\n")
    result = rvar("fit", "--config", config)
    assert result.returncode == 2
    assert len(_error_lines(result)) == 1 and "broken.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    missing = rvar("fit", "--config", tmp_path / "missing.yaml")
    assert missing.returncode == 2 and "missing.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_unknown_command_and_debug_traceback():
    result = rvar("frobnicate")
    assert result.returncode == 2 and len(_error_lines(result)) == 1
    debug = rvar("frobnicate", env_extra={"RVAR_DEBUG": "1"})
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.slow
def test_print_config_includes_the_default_data_module():
    result = rvar("fit", "--print_config")
    assert result.returncode == 0, result.stderr
    assert "rvar.data.DegradationDataModule" in result.stdout and "seed_everything: 0" in result.stdout
