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
