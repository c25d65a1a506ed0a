"""Rebuild a baseline from an rvar checkpoint (a Lightning checkpoint of a baseline, or a ``save_checkpoint`` file).

The checkpoint's ``configs["baseline"]`` names the registered class and its constructor arguments; the
weights (the LDM's tokenizer included) come from ``state_dict``, so no other file is needed.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Mapping

from rvar.errors import CheckpointError
from rvar.nn.checkpoints import load_strict
from rvar.registry import BASELINES


def _coerce(cls: type, init_args: Mapping[str, Any]) -> Dict[str, Any]:
    """Turn dicts back into the dataclasses the constructor expects (``denoiser``, ``network``)."""
    hints = typing.get_type_hints(cls.__init__)
    out = dict(init_args)
    for key, value in init_args.items():
        if not isinstance(value, Mapping):
            continue
        for candidate in typing.get_args(hints.get(key)) or (hints.get(key),):
            if dataclasses.is_dataclass(candidate):
                out[key] = candidate(**value)
                break
    return out


def load_baseline(ckpt: Mapping[str, Any], source: str = "checkpoint"):
    """The baseline module saved in ``ckpt`` (from :func:`rvar.nn.checkpoints.load_checkpoint`), in eval mode.

    Raises:
        CheckpointError: not a baseline checkpoint, an unknown baseline name, or weights that do not fit.
    """
    spec = ckpt.get("configs", {}).get("baseline")
    if ckpt.get("kind") != "baseline" or not isinstance(spec, Mapping) or "name" not in spec:
        raise CheckpointError(f"{source}: is a {ckpt.get('kind')} checkpoint, not a baseline")
    if spec["name"] not in BASELINES:
        raise CheckpointError(f"{source}: baseline {spec['name']!r} is not installed; known: "
                              f"{', '.join(BASELINES.list())}")
    cls = BASELINES.get(spec["name"])
    try:
        module = cls(**_coerce(cls, spec.get("init_args", {})))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: cannot rebuild baseline {spec['name']!r}: {exc}") from None
    load_strict(module, ckpt["state_dict"], source)
    return module.eval()
