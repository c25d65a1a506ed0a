"""The one small plugin registry of rvar (BasicSR's pattern), plus entry-point discovery.

There is one :class:`Registry` per plugin kind: ``DEGRADATIONS``, ``ATTENTION`` and ``BASELINES``.
A duplicate name raises, an unknown name raises with the list of known names, and ``list(pattern)``
filters with :mod:`fnmatch`.

Plugins arrive by entry point, never by scanning folders: a package declares an entry point in the group
``rvar.plugins``; loading it imports a module whose decorators register its plugins. rvar's own built-in
plugins (:mod:`rvar_plugins`) arrive the same way, through rvar's own entry point in ``pyproject.toml``, so
rvar itself never imports them. :func:`load_plugins` loads them all, once per process, on first use of a registry.
"""
from __future__ import annotations

import fnmatch
import importlib
import warnings
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional

from rvar.errors import UserError

ENTRY_POINT_GROUP = "rvar.plugins"


class Registry:
    """A strict name -> object mapping for one kind of plugin.

    Args:
        kind: what the registry holds, used in error messages (``"degradation"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, Any] = {}
        self._origin: Dict[str, str] = {}

    def register(self, name: Optional[str] = None, obj: Any = None):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")`` or directly."""

        def _add(target: Any) -> Any:
            key = name or getattr(target, "__name__", None)
            if not key:
                raise ValueError(f"a {self.kind} plugin needs a name")
            if key in self._items and self._items[key] is not target:
                raise KeyError(f"{self.kind} {key!r} is already registered (by {self._origin[key]}); pick another name")
            self._items[key] = target
            self._origin[key] = getattr(target, "__module__", "?")
            return target

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> Any:
        load_plugins()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UserError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[name]

    def origin(self, name: str) -> str:
        load_plugins()
        return self._origin[name]

    def list(self, pattern: str = "*") -> List[str]:
        load_plugins()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


DEGRADATIONS = Registry("degradation")
ATTENTION = Registry("attention")
BASELINES = Registry("baseline")
REGISTRIES = {"degradations": DEGRADATIONS, "attention": ATTENTION, "baselines": BASELINES}


def register_degradation(name: str) -> Callable[[Any], Any]:
    """Public decorator for degradation plugins.

    A degradation is a callable applied as ``op(images_BCHW, generator)`` to a float batch in [0, 1]
    and returning the degraded batch of the same shape; a class is instantiated with its keyword options
    first, a function is called as is.
    """
    return DEGRADATIONS.register(name)


def register_attention(name: str) -> Callable[[Any], Any]:
    """Public decorator for attention variants (see :class:`rvar.nn.prior.attention.AttentionVariant`)."""
    return ATTENTION.register(name)


def register_baseline(name: str) -> Callable[[Any], Any]:
    """Public decorator for baseline LightningModules (see :mod:`rvar_plugins.baselines`)."""
    return BASELINES.register(name)


_loaded = False
_loading = False


def load_plugins() -> None:
    """Import every ``rvar.plugins`` entry point (rvar's built-in plugins among them), once per process.

    A third-party entry point that fails to import is reported with a warning and skipped, so one
    broken package does not take the command down.
    """
    global _loaded, _loading
    if _loaded or _loading:
        return
    _loading = True
    try:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        if "rvar_plugins" not in {ep.value for ep in entry_points}:
            # a source checkout on PYTHONPATH (benchmarks/gpu.sh on a machine without rvar installed): the built-in
            # plugins are still importable, so use them, and say how to register them properly
            try:
                importlib.import_module("rvar_plugins")
                found = "imported from the source tree"
            except ImportError:
                found = "not found either"
            warnings.warn("rvar's built-in plugins have no rvar.plugins entry point (rvar is not installed): "
                          f"rvar_plugins {found}; install rvar, e.g. `pip install -e .`")
        for ep in entry_points:
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break rvar
                warnings.warn(f"rvar plugin entry point {ep.name!r} ({ep.value}) failed to load: {exc}")
        _loaded = True
    finally:
        _loading = False
