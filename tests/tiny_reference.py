"""Helpers to load the reference tiny weights (tests/fixtures, produced by the public VAR/RestoreVAR code)."""
from __future__ import annotations

from pathlib import Path

import torch

from rvar.nn.checkpoints import save_checkpoint
from rvar.nn.official import import_restorevar, import_tokenizer
from rvar.nn.restorer import Restorer

FIXTURES = Path(__file__).parent / "fixtures"
TINY_PATCH_NUMS = (1, 2, 3, 4)


def parity_data() -> dict:
    return torch.load(FIXTURES / "tiny_parity.pt", weights_only=True)


def tiny_restorer() -> Restorer:
    """The reference tiny restorer (tokenizer + prior + refiner) with the fixture weights."""
    vae = import_tokenizer(torch.load(FIXTURES / "tiny_vae.pth", weights_only=True), TINY_PATCH_NUMS, "tiny_vae.pth")
    sd = torch.load(FIXTURES / "tiny_restorevar.pth", weights_only=True)
    prior, refiner, _ = import_restorevar(sd, vae, heads=2, refiner_heads=2, source="tiny_restorevar.pth")
    restorer = Restorer(vae.config, prior.config, refiner.config)
    restorer.tokenizer.load_state_dict(vae.state_dict())
    restorer.prior.load_state_dict(prior.state_dict())
    restorer.refiner.load_state_dict(refiner.state_dict())
    return restorer.eval()


def save_tiny_restorer(path: Path) -> Path:
    return save_checkpoint(path, tiny_restorer(), {"source": "tests/fixtures"})
