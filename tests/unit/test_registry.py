import pytest

from rvar.errors import UserError
from rvar.registry import DEGRADATIONS, Registry


def test_duplicate_name_raises():
    registry = Registry("thing")
    registry.register("a", obj=object())
    with pytest.raises(KeyError, match="already registered"):
        registry.register("a", obj=object())


def test_unknown_name_lists_known_names():
    registry = Registry("thing")
    registry.register("alpha", obj=1)
    registry.register("beta", obj=2)
    with pytest.raises(UserError, match="known: alpha, beta"):
        registry.get("gamma")


def test_list_filters_with_fnmatch():
    registry = Registry("thing")
    for name in ("motion_blur", "defocus_blur", "rain"):
        registry.register(name, obj=name)
    assert registry.list("*blur") == ["defocus_blur", "motion_blur"]
    assert registry.list() == ["defocus_blur", "motion_blur", "rain"]


def test_builtin_degradations_are_registered():
    names = set(DEGRADATIONS.list())
    required = {"rain", "snow", "haze", "low_light", "gaussian_noise", "motion_blur", "defocus_blur", "jpeg",
                "downscale", "fog", "sun_flare", "mixed"}
    assert required <= names


def test_builtin_plugins_load_from_a_source_tree_without_the_entry_point():
    """A checkout on PYTHONPATH with rvar not installed (benchmarks/gpu.sh on a bare GPU machine): no rvar.plugins
    entry point, yet the built-in baselines must still be found, with one warning saying how to install."""
    import subprocess
    import sys

    code = (
        "import warnings\n"
        "from importlib import metadata\n"
        "real = metadata.entry_points\n"
        "metadata.entry_points = lambda **kw: [] if kw.get('group') == 'rvar.plugins' else real(**kw)\n"
        "from rvar.registry import BASELINES\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    names = BASELINES.list()\n"
        "print(sorted(names))\n"
        "print([str(w.message) for w in caught])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names, messages = done.stdout.strip().splitlines()[-2:]
    assert "'ldm'" in names and "'nafnet'" in names
    assert "imported from the source tree" in messages and "pip install -e ." in messages
