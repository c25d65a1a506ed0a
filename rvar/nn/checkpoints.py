"""rvar checkpoint files: one format for imported weights and for every training stage.

An rvar checkpoint is a ``torch.save`` dict with

* ``rvar_format``: 1
* ``kind``: ``"tokenizer"``, ``"prior"`` (tokenizer + prior), ``"restorer"`` (tokenizer + prior + refiner)
  or ``"baseline"``
* ``configs``: ``{"tokenizer": {...}, "prior": {...}, "refiner": {...}, ...}`` (dataclass fields), enough to
  rebuild the networks without any YAML
* ``state_dict``: parameters prefixed ``tokenizer.``, ``prior.``, ``refiner.`` (other prefixes are ignored)
* ``meta``: free-form provenance (source files, stage, decoder fine-tuned or not)

Lightning checkpoints written by rvar's LightningModules carry the same keys next to Lightning's own
(their submodules are named ``tokenizer``/``prior``/``refiner``), so one loader reads both.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from rvar.errors import CheckpointError
from rvar.files import atomic_write
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.refiner import LatentRefiner, RefinerConfig
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import VQVAE, TokenizerConfig

FORMAT_VERSION = 1
KINDS = ("tokenizer", "prior", "restorer", "baseline")


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


def save_checkpoint(path: str | os.PathLike, kind: str, configs: Mapping[str, Any],
                    state_dict: Mapping[str, torch.Tensor], meta: Optional[Mapping[str, Any]] = None) -> Path:
    """Write an rvar checkpoint atomically (temp file in the same folder, then rename)."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    payload = {"rvar_format": FORMAT_VERSION, "kind": kind, "configs": dict(configs),
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": dict(meta or {})}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | os.PathLike, kinds: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Read an rvar checkpoint (or an rvar Lightning checkpoint); ``kinds`` restricts what is accepted."""
    ckpt = read_torch_file(path)
    if ckpt.get("rvar_format") is None:
        hint = ""
        if any(k.startswith("encoder.") for k in ckpt) or any(k.startswith("blocks.") for k in ckpt):
            hint = "; it looks like an official VAR/RestoreVAR file: convert it with `rvar import-checkpoint`"
        raise CheckpointError(f"{path}: not an rvar checkpoint{hint}")
    if ckpt["rvar_format"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer rvar (format {ckpt['rvar_format']}); upgrade rvar")
    if kinds is not None:
        kinds = tuple(kinds)
        if ckpt.get("kind") not in kinds:
            raise CheckpointError(f"{path}: is a {ckpt.get('kind')} checkpoint, expected {' or '.join(kinds)}")
    return ckpt


def sub_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(prefix)}


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


# ---- building networks from a checkpoint ---------------------------------------------------------------------
def tokenizer_config(ckpt: Mapping[str, Any]) -> TokenizerConfig:
    return TokenizerConfig(**ckpt["configs"]["tokenizer"])


def build_tokenizer(ckpt: Mapping[str, Any], source: str = "checkpoint") -> VQVAE:
    """The tokenizer of any rvar checkpoint that has one (every kind but some baselines)."""
    if "tokenizer" not in ckpt.get("configs", {}):
        raise CheckpointError(f"{source}: holds no tokenizer")
    vae = VQVAE(tokenizer_config(ckpt))
    load_strict(vae, sub_state_dict(ckpt["state_dict"], "tokenizer."), source)
    return vae.eval()


def build_restorer(ckpt: Mapping[str, Any], source: str = "checkpoint", require_refiner: bool = False) -> Restorer:
    """A :class:`Restorer` from a ``prior`` or ``restorer`` checkpoint."""
    configs = ckpt.get("configs", {})
    if "prior" not in configs:
        raise CheckpointError(f"{source}: is a {ckpt.get('kind')} checkpoint, not a restorer (no prior inside)")
    refiner_cfg = RefinerConfig(**configs["refiner"]) if configs.get("refiner") else None
    if require_refiner and refiner_cfg is None:
        raise CheckpointError(f"{source}: has no refiner; train one with the refiner stage or import restorevar.pth")
    tokenizer = TokenizerConfig(**configs["tokenizer"])
    restorer = Restorer(tokenizer, PriorConfig.for_tokenizer(tokenizer, source, **configs["prior"]), refiner_cfg)
    sd = ckpt["state_dict"]
    load_strict(restorer.tokenizer, sub_state_dict(sd, "tokenizer."), source)
    load_strict(restorer.prior, sub_state_dict(sd, "prior."), source)
    if restorer.refiner is not None:
        load_strict(restorer.refiner, sub_state_dict(sd, "refiner."), source)
    return restorer.eval()


def restorer_payload(restorer: Restorer) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(configs, state_dict) of a restorer, ready for :func:`save_checkpoint`."""
    return payload_from_parts(restorer.tokenizer, restorer.prior, restorer.refiner)


def payload_from_parts(tokenizer: VQVAE, prior: Optional[RestoreVARPrior] = None,
                       refiner: Optional[LatentRefiner] = None) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(configs, state_dict) from separate networks, without building a :class:`Restorer` around them."""
    configs: Dict[str, Any] = {"tokenizer": tokenizer.config.to_dict()}
    sd = {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}
    if prior is not None:
        configs["prior"] = prior.config.to_dict()
        configs["refiner"] = refiner.config.to_dict() if refiner is not None else None
        sd.update({f"prior.{k}": v for k, v in prior.state_dict().items()})
    if refiner is not None:
        sd.update({f"refiner.{k}": v for k, v in refiner.state_dict().items()})
    return configs, sd


__all__ = ["FORMAT_VERSION", "read_torch_file", "save_checkpoint", "load_checkpoint", "load_strict",
           "sub_state_dict", "build_tokenizer", "build_restorer", "restorer_payload", "payload_from_parts", "tokenizer_config",
           "RestoreVARPrior", "LatentRefiner"]
