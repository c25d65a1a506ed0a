"""A small PatchGAN discriminator and hinge losses for the tokenizer stage's optional adversarial term.

Pix2Pix's PatchGAN (Isola et al., 2017), as used by VQGAN/LDM's ``NLayerDiscriminator``: strided 4x4
convolutions, one logit per image patch. It lives next to the stage that uses it (only the tokenizer stage
trains adversarially); it is a plain ``nn.Module``.

Shapes: B batch, H/W image side, h/w patch-logit map side.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchDiscriminator(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> patch logits (B, 1, h, w).

    Args:
        width: channels of the first layer (doubled per layer, capped at 8x).
        layers: strided layers.
    """

    def __init__(self, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        body = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for i in range(1, layers + 1):
            out = width * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            body += [nn.Conv2d(channels, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out),
                     nn.LeakyReLU(0.2, inplace=True)]
            channels = out
        body.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.net = nn.Sequential(*body)
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        return self.net(img_B3HW)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
