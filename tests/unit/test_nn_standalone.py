"""rvar.nn stands alone: building the networks imports neither Lightning nor the plugin stack."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.refiner import LatentRefiner, RefinerConfig
from rvar.nn.tokenizer import VQVAE, TokenizerConfig

VQVAE(TokenizerConfig.tiny())
for attention in ("l2norm", "sdpa"):
    RestoreVARPrior(PriorConfig(**{**PriorConfig.tiny().to_dict(), "attention": attention}))
LatentRefiner(RefinerConfig.tiny())
print(sorted(m for m in ("lightning", "kornia", "diffusers", "rvar_plugins", "rvar.registry") if m in sys.modules))
"""


def test_building_networks_loads_no_lightning_and_no_plugins():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
