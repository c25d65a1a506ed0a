"""Image-quality metrics shared by training stages, ``rvar compare`` and the demo.

Inputs are (B, 3, H, W) in [0, 1]. PSNR and SSIM come from torchmetrics; LPIPS needs backbone weights that
cannot be downloaded on every machine: :func:`load_lpips` uses them when present in ``$TORCH_HOME`` and
otherwise returns None after one clear warning.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Optional

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from rvar.pixels import to_signed

_LPIPS_WARNED = False


def psnr_per_image(pred_B3HW: torch.Tensor, target_B3HW: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image, data range 1. Returns (B,)."""
    return peak_signal_noise_ratio(pred_B3HW.float().clamp(0, 1), target_B3HW.float().clamp(0, 1), data_range=1.0,
                                   reduction="none", dim=(1, 2, 3))


def ssim_per_image(pred_B3HW: torch.Tensor, target_B3HW: torch.Tensor) -> torch.Tensor:
    """SSIM of each image (gaussian window 11, data range 1). Returns (B,)."""
    return structural_similarity_index_measure(pred_B3HW.float().clamp(0, 1), target_B3HW.float().clamp(0, 1),
                                               data_range=1.0, reduction="none")


def ciede2000_per_image(pred_B3HW: torch.Tensor, target_B3HW: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 colour difference of each image (sRGB -> CIELAB, D65; scikit-image's formula): 0 for the
    same colours, about 2.3 for a just-noticeable difference; lower is better. Returns (B,)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    def lab(images_B3HW: torch.Tensor):
        return rgb2lab(images_B3HW.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().double().numpy(), channel_axis=-1)

    delta = deltaE_ciede2000(lab(pred_B3HW), lab(target_B3HW), channel_axis=-1)
    return torch.from_numpy(delta.reshape(delta.shape[0], -1).mean(axis=1)).float()


def mean(values: Iterable[Optional[float]]) -> Optional[float]:
    """The mean of the values that are not None (None when none is): every per-degradation table averages so."""
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _torch_home() -> Path:
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))


def lpips_weights_present(net: str = "alex") -> bool:
    """True when the torchvision backbone LPIPS needs is already in ``$TORCH_HOME/hub/checkpoints``."""
    prefix = {"alex": "alexnet-", "vgg": "vgg16-", "squeeze": "squeezenet1_1-"}[net]
    folder = _torch_home() / "hub" / "checkpoints"
    return folder.is_dir() and any(p.name.startswith(prefix) for p in folder.iterdir())


def load_lpips(net: str = "alex", allow_random_backbone: bool = False) -> Optional[torch.nn.Module]:
    """An LPIPS module (eval, frozen), or None with one warning when its backbone weights are missing.

    Args:
        allow_random_backbone: build LPIPS on a randomly initialised backbone instead of skipping. Only for
            testing the plumbing: its values are not LPIPS.
    """
    global _LPIPS_WARNED
    present = lpips_weights_present(net)
    if not present and not allow_random_backbone:
        if not _LPIPS_WARNED:
            warnings.warn(f"LPIPS skipped: the {net} backbone weights are not in {_torch_home() / 'hub' / 'checkpoints'} "
                          "(they cannot be downloaded here); copy them there to enable LPIPS", stacklevel=2)
            _LPIPS_WARNED = True
        return None
    import lpips  # imported lazily: it pulls in torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=not present, verbose=False)
    return model.eval().requires_grad_(False)


def lpips_per_image(model: torch.nn.Module, pred_B3HW: torch.Tensor, target_B3HW: torch.Tensor) -> torch.Tensor:
    """LPIPS distance of each image (lower is better). Returns (B,)."""
    with torch.no_grad():
        return model(to_signed(pred_B3HW.float()), to_signed(target_B3HW.float()), normalize=False).flatten()
