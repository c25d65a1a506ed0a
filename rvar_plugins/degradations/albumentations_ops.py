"""Built-in per-image degradations from Albumentations: run in the dataloader workers (``device_op = False``).

Albumentations works on one numpy HWC uint8 image at a time, on the CPU. Each op still follows the batch
contract ``op(images_BCHW, generator)``: it loops over the batch, draws one int seed per image from
``generator`` and seeds the transform with it (``set_random_seed``), so results are reproducible.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from rvar.io import to_uint8_hwc
from rvar.registry import register_degradation
from rvar_plugins.degradations._sampling import Range, as_range, seed_from, uniform


def _albumentations():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import
    import albumentations

    return albumentations


class _PerImageOp:
    """Base class: applies an Albumentations transform to each image of the batch."""

    device_op = False

    def transform(self, generator: torch.Generator, height: int, width: int) -> Any:
        raise NotImplementedError

    def __call__(self, images_BCHW: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = []
        for image_CHW in images_BCHW:
            height, width = image_CHW.shape[-2:]
            transform = self.transform(generator, height, width)
            transform.set_random_seed(seed_from(generator))
            result = transform(image=to_uint8_hwc(image_CHW))["image"]
            out.append(torch.from_numpy(result.astype(np.float32) / 255.0).permute(2, 0, 1))
        return torch.stack(out).to(images_BCHW).clamp(0, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({vars(self)})"


@register_degradation("fog")
class Fog(_PerImageOp):
    """Patchy fog with Albumentations ``RandomFog``.

    Args:
        fog_coef: fog intensity, range [0, 1]; default [0.3, 0.7].
        alpha_coef: transparency of the fog circles, range [0, 1]; default 0.08.
    """

    def __init__(self, fog_coef: Range = (0.3, 0.7), alpha_coef: float = 0.08) -> None:
        self.fog_coef, self.alpha_coef = as_range(fog_coef, "fog_coef"), float(alpha_coef)

    def transform(self, generator, height, width):
        return _albumentations().RandomFog(fog_coef_range=self.fog_coef, alpha_coef=self.alpha_coef, p=1.0)


@register_degradation("sun_flare")
class SunFlare(_PerImageOp):
    """Lens flare with Albumentations ``RandomSunFlare`` (overlay method).

    Args:
        radius: flare source radius as a fraction of the longer image side, range [0.05, 1]; default [0.2, 0.4].
        num_circles: number of flare circles, range [1, 20]; default [4, 8].
        flare_roi: region (x_min, y_min, x_max, y_max, fractions) where the sun may be; default top half.
    """

    def __init__(self, radius: Range = (0.2, 0.4), num_circles: Range = (4, 8),
                 flare_roi: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.5)) -> None:
        self.radius, self.num_circles = as_range(radius, "radius"), as_range(num_circles, "num_circles")
        self.flare_roi = tuple(float(v) for v in flare_roi)

    def transform(self, generator, height, width):
        radius = int(float(uniform(generator, self.radius, 1)) * max(height, width))
        circles = (int(self.num_circles[0]), int(self.num_circles[1]))
        return _albumentations().RandomSunFlare(flare_roi=self.flare_roi, src_radius=max(radius, 4),
                                                num_flare_circles_range=circles, method="overlay", p=1.0)


@register_degradation("snow")
class Snow(_PerImageOp):
    """Snow (Snow100K-style brightening of snowy regions) with Albumentations ``RandomSnow``.

    Args:
        snow_point: fraction of the image covered, range [0, 1]; default [0.2, 0.4].
        brightness: brightness multiplier of the snow, range [1, 4]; default 2.5.
        method: ``bleach`` (classic) or ``texture`` (sparkly snow layer); default ``texture``.
    """

    def __init__(self, snow_point: Range = (0.2, 0.4), brightness: float = 2.5, method: str = "texture") -> None:
        self.snow_point, self.brightness, self.method = as_range(snow_point, "snow_point"), float(brightness), method

    def transform(self, generator, height, width):
        return _albumentations().RandomSnow(snow_point_range=self.snow_point, brightness_coeff=self.brightness,
                                            method=self.method, p=1.0)


@register_degradation("rain_drops")
class RainDrops(_PerImageOp):
    """Rain drops / drizzle streaks drawn by Albumentations ``RandomRain`` (a per-image CPU alternative to ``rain``).

    Args:
        slant: streak slant in pixels, range [-20, 20]; default [-10, 10].
        rain_type: ``drizzle``, ``heavy``, ``torrential`` or ``default``; default ``heavy``.
        brightness: image brightness multiplier under rain, range [0.5, 1]; default 0.8.
    """

    def __init__(self, slant: Range = (-10.0, 10.0), rain_type: str = "heavy", brightness: float = 0.8) -> None:
        self.slant, self.rain_type, self.brightness = as_range(slant, "slant"), rain_type, float(brightness)

    def transform(self, generator, height, width):
        return _albumentations().RandomRain(slant_range=self.slant, rain_type=self.rain_type, blur_value=3, p=1.0,
                                            brightness_coefficient=self.brightness, drop_length=max(4, height // 12))
