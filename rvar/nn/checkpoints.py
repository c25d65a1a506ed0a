"""rvar checkpoint files: one format for imported weights, every training stage and the baselines.

A ``torch.save`` dict, read with ``torch.load(weights_only=True)``:

* ``rvar_format``: 2; ``kind``: ``"tokenizer"``, ``"prior"`` (tokenizer + prior), ``"restorer"`` (tokenizer +
  prior + refiner) or ``"baseline"``; ``meta``: free-form provenance (source files, stage, decoder fine-tuned)
* ``model``: the one description of the network, ``{"class_path": ..., "init_args": {...}}`` in plain JSON
  values (dataclass configs as dicts), written by :func:`checkpoint_entries` and built with jsonargparse by
  :func:`load_network`: a :class:`~rvar.nn.tokenizer.VQVAE`, a :class:`~rvar.nn.restorer.Restorer` (its
  ``refiner`` None for a prior) or a baseline registered in :data:`rvar.registry.BASELINES`. A checkpoint is
  untrusted: any other ``class_path`` is refused, never imported, and only plain-typed arguments are read.
* ``state_dict``: rvar's networks' parameters prefixed ``tokenizer.``, ``prior.``, ``refiner.`` (other
  prefixes are ignored); a baseline's own state dict

Format 1 had ``configs`` instead of ``model`` (``{"tokenizer": {...}, "prior": {...}, "refiner": {...}}`` or
``{"baseline": {"name": registered name, "init_args": {...}}}``); :func:`model_description` translates it.
Lightning checkpoints written by rvar's LightningModules carry the same keys next to Lightning's own
(their submodules are named ``tokenizer``/``prior``/``refiner``), so one loader reads both.
"""
from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

import torch
import torch.nn as nn

from rvar.errors import CheckpointError, UserError
from rvar.files import atomic_write
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import VQVAE

FORMAT_VERSION = 2
TOKENIZER, RESTORER = "rvar.nn.tokenizer.VQVAE", "rvar.nn.restorer.Restorer"
RVAR_NETWORKS = {TOKENIZER: VQVAE, RESTORER: Restorer}
RVAR_PREFIXES = ("tokenizer.", "prior.", "refiner.", "gate.")


# ---- reading and writing ------------------------------------------------------------------------------------
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_MAGIC = b"\x80"  # the legacy format starts with a pickle protocol byte


def read_torch_file(path: str | os.PathLike, mmap: bool = False) -> Dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors that name the file: missing, not a file, not a
    PyTorch checkpoint at all, holding Python objects rvar will not unpickle, corrupt or truncated.
    ``mmap``: map the tensors' storage instead of reading it (for a look at a big file's small entries)."""
    import pickle

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"{p}: is not a file")
    with open(p, "rb") as handle:
        head = handle.read(4)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC)):
        raise CheckpointError(f"{p}: not a PyTorch checkpoint (neither torch.save's zip format nor a pickle); "
                              f"check the path")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap and head.startswith(_ZIP_MAGIC))
    except pickle.UnpicklingError as exc:
        paragraphs = [" ".join(part.split()) for part in str(exc).split("\n\n") if part.strip()]
        detail = next((part for part in paragraphs if not part.startswith(("Weights only load failed",
                                                                           "Check the documentation"))), "")
        detail = detail.replace("WeightsUnpickler error: ", "").rstrip(".")
        raise CheckpointError(f"{p}: holds Python objects other than tensors and plain values, which rvar does "
                              f"not unpickle (they could run code): {detail[:160]}; save only state dicts, "
                              f"or re-export it with rvar") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types (RuntimeError, EOFError, ...) for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: corrupt or truncated PyTorch checkpoint ({first[:160]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def save_checkpoint(path: str | os.PathLike, module: nn.Module, meta: Optional[Mapping[str, Any]] = None) -> Path:
    """Write the rvar checkpoint of ``module`` (see :func:`network_of`) atomically (temp file, then rename)."""
    net = network_of(module)
    prefix = "tokenizer." if isinstance(net, VQVAE) else ""  # a tokenizer's keys as a restorer's
    state_dict = {prefix + k: v.detach().cpu() for k, v in net.state_dict().items()}
    payload = {**checkpoint_entries(net, meta), "state_dict": state_dict}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | os.PathLike, kinds: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Read an rvar checkpoint (or an rvar Lightning checkpoint); ``kinds`` restricts what is accepted."""
    ckpt = read_torch_file(path)
    if ckpt.get("rvar_format") is None:
        hint = ""
        if any(k.startswith("encoder.") for k in ckpt) or any(k.startswith("blocks.") for k in ckpt):
            hint = "; it looks like an official VAR/RestoreVAR file: convert it with `rvar import-checkpoint`"
        raise CheckpointError(f"{path}: not an rvar checkpoint{hint}")
    if not isinstance(ckpt["rvar_format"], int) or ckpt["rvar_format"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer rvar (format {ckpt['rvar_format']}); upgrade rvar")
    if kinds is not None and ckpt.get("kind") not in tuple(kinds):
        raise CheckpointError(f"{path}: is a {ckpt.get('kind')} checkpoint, expected {' or '.join(kinds)}")
    return ckpt


def sub_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def describe_mismatch(missing: List[str], unexpected: List[str], misshaped: List[str], limit: int = 3) -> str:
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{len(keys)} {label} key(s): {', '.join(keys[:limit])}{more}")
    return "; ".join(parts)


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` that reports missing/unexpected/mis-shaped keys in one line."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
                 and not k.endswith("ema_vocab_hit_SV")]
    if missing or unexpected or misshaped:
        raise CheckpointError(f"{source}: does not fit the model: {describe_mismatch(missing, unexpected, misshaped)}")
    module.load_state_dict(state_dict, strict=True)


# ---- describing a network: the one writer of ``model`` ----------------------------------------------------
def network_of(module: nn.Module) -> nn.Module:
    """The network ``module`` stands for: itself (a VQVAE, a Restorer, a baseline with ``init_args()``) or, for
    a training stage, its ``tokenizer``, with its ``prior`` (and ``refiner``) when it has one."""
    if isinstance(module, (VQVAE, Restorer)) or hasattr(module, "init_args"):
        return module
    if getattr(module, "prior", None) is not None:
        return Restorer.from_networks(module.tokenizer, module.prior, getattr(module, "refiner", None),
                                      getattr(module, "gate", None))
    return module.tokenizer


def checkpoint_entries(module: nn.Module, meta: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Every top-level key of the format for :func:`network_of` ``(module)`` but ``state_dict``."""
    net = network_of(module)
    if isinstance(net, VQVAE):
        kind, path, init_args = "tokenizer", TOKENIZER, {"config": net.config.to_dict()}
    else:
        kind = "baseline" if not isinstance(net, Restorer) else "prior" if net.refiner is None else "restorer"
        path, init_args = RESTORER if kind != "baseline" else _dotted(type(net)), net.init_args()
    return {"rvar_format": FORMAT_VERSION, "kind": kind, "meta": dict(meta or {}),
            "model": {"class_path": path, "init_args": json.loads(json.dumps(init_args))}}


# ---- building networks from a checkpoint ---------------------------------------------------------------------
def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _registered_baselines() -> Dict[str, type]:
    from rvar.registry import BASELINES  # rvar.nn reaches the plugins only for a file that names one

    return {_dotted(cls): cls for cls in map(BASELINES.get, BASELINES.list())}


def model_description(ckpt: Mapping[str, Any], source: str = "checkpoint") -> Dict[str, Any]:
    """The checkpoint's ``model`` entry; a format-1 file's ``configs`` are translated into one."""
    configs, model = ckpt.get("configs") or {}, ckpt.get("model")
    if "model" in ckpt or not isinstance(configs, Mapping):
        if not (isinstance(model, Mapping) and isinstance(model.get("class_path"), str)
                and isinstance(model.get("init_args") or {}, Mapping)):
            raise CheckpointError(f"{source}: its `model` entry is not a {{class_path, init_args}} description")
        return model
    if isinstance(configs.get("baseline"), Mapping):
        from rvar.registry import BASELINES  # rvar.nn reaches the plugins only for a file that names one

        name = configs["baseline"].get("name")
        if name not in BASELINES:
            raise CheckpointError(f"{source}: baseline {name!r} is not installed; known: {', '.join(BASELINES.list())}")
        return {"class_path": _dotted(BASELINES.get(name)), "init_args": configs["baseline"].get("init_args", {})}
    if configs.get("prior"):
        return {"class_path": RESTORER, "init_args": {k: configs.get(k) for k in ("tokenizer", "prior", "refiner")}}
    return {"class_path": TOKENIZER, "init_args": {"config": configs.get("tokenizer")}}


def _plain(hint: Any) -> bool:
    """A type jsonargparse fills from JSON without importing anything: scalars, containers, dataclasses of them."""
    if hint in (int, float, str, bool, type(None), Any) or typing.get_origin(hint) is typing.Literal:
        return True
    if dataclasses.is_dataclass(hint):
        return all(map(_plain, typing.get_type_hints(hint).values()))
    return (typing.get_origin(hint) in (typing.Union, types.UnionType, list, tuple, dict)
            and all(arg is Ellipsis or _plain(arg) for arg in typing.get_args(hint)))


def load_network(description: Any, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """The network of a ``model`` description, built by jsonargparse, with its weights, in eval mode. Only rvar's
    networks and registered baselines are built (the file's ``class_path`` is never imported), and ``init_args``
    may only set constructor arguments of plain types and name no class."""
    from jsonargparse import ArgumentParser

    path, init_args = description["class_path"], description.get("init_args") or {}
    cls = RVAR_NETWORKS.get(path) or _registered_baselines().get(path)
    if cls is None:
        raise CheckpointError(f"{source}: refusing to build {path!r}: not an rvar network or a registered baseline")
    hints = typing.get_type_hints(cls.__init__)
    refused = [str(k) for k in init_args if not (k in hints and _plain(hints[k]))]
    if refused or '"class_path"' in json.dumps(init_args, skipkeys=True, default=lambda _: {"class_path": None}):
        raise CheckpointError(f"{source}: refusing to build {path}: init_args {', '.join(refused) or 'name a class'} "
                              f"(a checkpoint sets only plain values)")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "model")
    try:
        net = parser.instantiate(parser.parse_object({"model": dict(init_args)})).model
    except (ArgumentError, TypeError, ValueError, UserError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise CheckpointError(f"{source}: cannot build {path}: {first[:200]}") from None
    if isinstance(net, (VQVAE, Restorer)):  # the prefixes of rvar's networks; Lightning files hold more
        state_dict = sub_state_dict({k: v for k, v in state_dict.items() if k.startswith(RVAR_PREFIXES)},
                                    "tokenizer." if isinstance(net, VQVAE) else "")
    load_strict(net, state_dict, source)
    return net.eval()


def build_tokenizer(ckpt: Mapping[str, Any], source: str = "checkpoint") -> VQVAE:
    """The tokenizer of any rvar checkpoint that has one (every kind but some baselines)."""
    description = model_description(ckpt, source)
    if description["class_path"] == RESTORER:
        description = {"class_path": TOKENIZER, "init_args": {"config": (description.get("init_args") or {}).get("tokenizer")}}
    net = load_network(description, ckpt["state_dict"], source)
    if not isinstance(getattr(net, "tokenizer", net), VQVAE):
        raise CheckpointError(f"{source}: holds no tokenizer")
    return getattr(net, "tokenizer", net).eval()


def build_restorer(ckpt: Mapping[str, Any], source: str = "checkpoint", require_refiner: bool = False) -> Restorer:
    """A :class:`Restorer` from a ``prior`` or ``restorer`` checkpoint."""
    description = model_description(ckpt, source)
    if description["class_path"] != RESTORER:
        raise CheckpointError(f"{source}: is a {ckpt.get('kind')} checkpoint, not a restorer (no prior inside)")
    if require_refiner and not (description.get("init_args") or {}).get("refiner"):
        raise CheckpointError(f"{source}: has no refiner; train one with the refiner stage or import restorevar.pth")
    return load_network(description, ckpt["state_dict"], source)


__all__ = ["FORMAT_VERSION", "read_torch_file", "save_checkpoint", "load_checkpoint", "load_strict", "sub_state_dict",
           "network_of", "checkpoint_entries", "model_description", "load_network", "build_tokenizer", "build_restorer"]
