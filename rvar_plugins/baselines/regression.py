"""The regression baseline: NAFNet in pixel space trained with an L1 loss.

The strong non-generative reference of all-in-one restoration (NAFNet, Chen et al., ECCV 2022; used as a
baseline by PromptIR and RestoreVAR's tables). One network pass per image, any image size.

Shapes: B batch, H/W image side.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable

from rvar.registry import register_baseline
from rvar_plugins.baselines.common import BaselineModule
from rvar_plugins.baselines.nafnet import NAFNet, NAFNetConfig


@register_baseline("nafnet")
class RegressionRestorer(BaselineModule):
    """NAFNet regression restorer (pixel space, L1 loss, one pass).

    Args:
        network: NAFNet sizes; None: ``NAFNetConfig.tiny()`` (use ``width32`` sizes for real training).
        optimizer: injected optimizer (AdamW lr 2e-4 if None).
    """

    name = "nafnet"
    native_size = None  # fully convolutional

    def __init__(self, network: Optional[NAFNetConfig] = None, optimizer: Optional[OptimizerCallable] = None) -> None:
        super().__init__(optimizer)
        self.network = NAFNet(network or NAFNetConfig.tiny())

    def init_args(self) -> Dict[str, Any]:
        return {"network": self.network.config.to_dict()}

    def training_loss(self, batch: Dict[str, Any]) -> torch.Tensor:
        return F.l1_loss(self.network(batch["degraded"].float()), batch["clean"].float())

    @torch.no_grad()
    def restore_images(self, degraded_B3HW_01: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
        """Restore images in [0, 1] of any size; ``steps`` is ignored (one pass)."""
        return self.network(degraded_B3HW_01.float()).clamp(0, 1)
