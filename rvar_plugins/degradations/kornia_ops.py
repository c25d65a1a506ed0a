"""Built-in batched degradations (Kornia / torch): run on the accelerator in ``on_after_batch_transfer``.

Each is a class instantiated with its keyword options (ranges are ``[low, high]`` lists or single numbers) and
applied as ``op(images_BCHW, generator)`` to a float batch in [0, 1]; every random number is drawn from
``generator``, one value per image; ``generator`` may also be a list, one per image (``per_image_generators``),
which the pipeline uses to degrade a whole batch in one call. Shapes: B batch, C=3 channels, H height, W width.
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from rvar.registry import register_degradation
from rvar_plugins.degradations._sampling import (Range, as_range, by_value, draw, normal_like, per_sample,
                                                 randint_each, uniform)


class _BatchOp:
    """Base class: ``device_op = True`` (batched torch/Kornia ops run where the batch is)."""

    device_op = True
    per_image_generators = True

    def __call__(self, images_BCHW: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images_BCHW, generator).clamp(0, 1)

    def apply(self, images_BCHW: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({vars(self)})"


@register_degradation("gaussian_noise")
class GaussianNoise(_BatchOp):
    """Additive white Gaussian noise (BSD68-style denoising).

    Args:
        sigma: standard deviation in 0-255 units, range [0, 100]; default [5, 50]
            (RestoreVAR's three-task set uses 15, 25, 50).
    """

    def __init__(self, sigma: Range = (5.0, 50.0)) -> None:
        self.sigma = as_range(sigma, "sigma")

    def apply(self, images_BCHW, generator):
        sigma_B = uniform(generator, self.sigma, images_BCHW.shape[0]) / 255.0
        return images_BCHW + per_sample(sigma_B, images_BCHW) * normal_like(images_BCHW, generator)


@register_degradation("low_light")
class LowLight(_BatchOp):
    """Low light (LOL-style): ``gain * x ** gamma`` with Kornia's ``adjust_gamma``, plus sensor noise.

    Args:
        gamma: range [1, 5]; default [1.5, 3.0].
        gain: range (0, 1]; default [0.15, 0.5].
        noise_sigma: Gaussian read noise in 0-255 units, range [0, 20]; default [1, 8].
    """

    def __init__(self, gamma: Range = (1.5, 3.0), gain: Range = (0.15, 0.5), noise_sigma: Range = (1.0, 8.0)):
        self.gamma, self.gain = as_range(gamma, "gamma"), as_range(gain, "gain")
        self.noise_sigma = as_range(noise_sigma, "noise_sigma")

    def apply(self, images_BCHW, generator):
        n = images_BCHW.shape[0]
        gamma_B, gain_B = uniform(generator, self.gamma, n), uniform(generator, self.gain, n)
        sigma_B = uniform(generator, self.noise_sigma, n) / 255.0
        dark = kornia.enhance.adjust_gamma(images_BCHW, gamma_B.to(images_BCHW.device), gain_B.to(images_BCHW.device))
        return dark + per_sample(sigma_B, images_BCHW) * normal_like(images_BCHW, generator)


@register_degradation("motion_blur")
class MotionBlur(_BatchOp):
    """Linear camera-shake blur (GoPro-style) with Kornia's ``motion_blur``.

    Args:
        kernel_size: odd length in pixels, range [3, 51]; one value per call; default [7, 21].
        angle: degrees, range [0, 360); default [0, 360].
        direction: -1 (backward) to 1 (forward) weighting along the line; default [-1, 1].
    """

    def __init__(self, kernel_size: Range = (7, 21), angle: Range = (0.0, 360.0), direction: Range = (-1.0, 1.0)):
        self.kernel_size, self.angle = as_range(kernel_size, "kernel_size"), as_range(angle, "angle")
        self.direction = as_range(direction, "direction")

    def apply(self, images_BCHW, generator):
        n = images_BCHW.shape[0]
        sizes = randint_each(generator, int(self.kernel_size[0]) // 2, int(self.kernel_size[1]) // 2, n)
        angle_B = uniform(generator, self.angle, n).to(images_BCHW.device)
        dir_B = uniform(generator, self.direction, n).to(images_BCHW.device)
        return by_value([max(s * 2 + 1, 3) for s in sizes], images_BCHW, lambda x, size, rows:
                        kornia.filters.motion_blur(x, size, angle_B[rows], dir_B[rows], border_type="reflect"))


@register_degradation("defocus_blur")
class DefocusBlur(_BatchOp):
    """Out-of-focus blur: a disk (pillbox) kernel, applied with Kornia's ``filter2d``.

    Kornia has no disk kernel, so the kernel is built here by hand (anti-aliased edge, one radius per image).

    Args:
        radius: disk radius in pixels, range [0.5, 15]; default [1.5, 5.0].
    """

    def __init__(self, radius: Range = (1.5, 5.0)) -> None:
        self.radius = as_range(radius, "radius")

    def apply(self, images_BCHW, generator):
        radius_B = uniform(generator, self.radius, images_BCHW.shape[0])

        def blur(x, half, rows):  # a kernel of side 2 * half + 1 for the images whose radius rounds up to half - 1
            coords = torch.arange(-half, half + 1, dtype=torch.float32)
            dist_kk = (coords[None, :] ** 2 + coords[:, None] ** 2).sqrt()
            kernel_Bkk = (radius_B[rows].view(-1, 1, 1) + 0.5 - dist_kk).clamp(0, 1)  # soft edge
            kernel_Bkk = kernel_Bkk / kernel_Bkk.sum((1, 2), keepdim=True)
            return kornia.filters.filter2d(x, kernel_Bkk.to(x), border_type="reflect")

        return by_value([int(math.ceil(r)) + 1 for r in radius_B.tolist()], images_BCHW, blur)


@register_degradation("jpeg")
class Jpeg(_BatchOp):
    """JPEG compression artefacts with Kornia's differentiable JPEG codec.

    Args:
        quality: JPEG quality, range [1, 100]; default [10, 40].
    """

    def __init__(self, quality: Range = (10.0, 40.0)) -> None:
        self.quality = as_range(quality, "quality")

    def apply(self, images_BCHW, generator):
        quality_B = uniform(generator, self.quality, images_BCHW.shape[0]).round()
        return kornia.enhance.jpeg_codec_differentiable(images_BCHW, quality_B.to(images_BCHW))


@register_degradation("downscale")
class Downscale(_BatchOp):
    """Low resolution: Kornia ``rescale`` down (anti-aliased) and back up to the original size.

    Args:
        factor: down-scaling factor, range [1.2, 8]; default [2, 4].
        mode: interpolation back up, ``bilinear`` or ``bicubic``; default ``bicubic``.
    """

    def __init__(self, factor: Range = (2.0, 4.0), mode: str = "bicubic") -> None:
        self.factor, self.mode = as_range(factor, "factor"), mode

    def apply(self, images_BCHW, generator):
        factor_B = uniform(generator, self.factor, images_BCHW.shape[0])
        height, width = images_BCHW.shape[-2:]
        out = []
        for image_1CHW, factor in zip(images_BCHW.split(1), factor_B.tolist()):  # one size per image
            small = kornia.geometry.rescale(image_1CHW, 1.0 / factor, interpolation="area")
            out.append(F.interpolate(small, size=(height, width), mode=self.mode, align_corners=False))
        return torch.cat(out)


@register_degradation("haze")
class Haze(_BatchOp):
    """Atmospheric scattering ``I = J * t + A * (1 - t)`` with ``t = exp(-beta * d)`` (RESIDE-style haze).

    Written by hand (neither Kornia nor Albumentations has a depth-aware haze). The depth proxy ``d`` in [0, 1]
    mixes a vertical ramp (the top of a photo is usually farther) with the blurred brightness of the image.

    Args:
        beta: scattering coefficient, range [0.2, 4]; default [0.8, 2.0].
        airlight: atmospheric light A, range [0.5, 1]; default [0.7, 1.0].
    """

    def __init__(self, beta: Range = (0.8, 2.0), airlight: Range = (0.7, 1.0)) -> None:
        self.beta, self.airlight = as_range(beta, "beta"), as_range(airlight, "airlight")

    def apply(self, images_BCHW, generator):
        n, _, height, width = images_BCHW.shape
        beta_B, air_B = uniform(generator, self.beta, n), uniform(generator, self.airlight, n)
        ramp_B1H1 = torch.linspace(1.0, 0.0, height, device=images_BCHW.device).view(1, 1, height, 1)
        sigma = max(height, width) / 16
        size = int(sigma * 3) * 2 + 1
        bright_B1HW = kornia.filters.gaussian_blur2d(images_BCHW.mean(1, keepdim=True), (size, size),
                                                    (sigma, sigma), border_type="reflect")
        depth_B1HW = 0.6 * ramp_B1H1 + 0.4 * bright_B1HW
        t_B1HW = torch.exp(-per_sample(beta_B, images_BCHW) * depth_B1HW)
        return images_BCHW * t_B1HW + per_sample(air_B, images_BCHW) * (1 - t_B1HW)


@register_degradation("rain")
class Rain(_BatchOp):
    """Rain streaks (Rain13K / Rain100L-style), batched: sparse drops smeared by Kornia's ``motion_blur``.

    The streak layer is made by hand (Kornia has no rain op; Albumentations' RandomRain runs per image on the
    CPU): random drop seeds, blurred along one slanted direction per image, added as bright streaks.

    Args:
        density: fraction of pixels seeding a drop, range [0.001, 0.05]; default [0.005, 0.02].
        length: streak length in pixels (odd), range [5, 41]; one value per call; default [11, 25].
        angle: streak angle in degrees from vertical, range [-45, 45]; default [-20, 20].
        brightness: streak strength, range [0.2, 1.5]; default [0.5, 1.0].
    """

    def __init__(self, density: Range = (0.005, 0.02), length: Range = (11, 25), angle: Range = (-20.0, 20.0),
                 brightness: Range = (0.5, 1.0)) -> None:
        self.density, self.length = as_range(density, "density"), as_range(length, "length")
        self.angle, self.brightness = as_range(angle, "angle"), as_range(brightness, "brightness")

    def apply(self, images_BCHW, generator):
        n, _, height, width = images_BCHW.shape
        density_B, angle_B = uniform(generator, self.density, n), uniform(generator, self.angle, n)
        bright_B = uniform(generator, self.brightness, n)
        lengths = [s * 2 + 1 for s in randint_each(generator, int(self.length[0]) // 2, int(self.length[1]) // 2, n)]
        seeds_B1HW = (draw(torch.rand, generator, (n, 1, height, width)) < density_B.view(-1, 1, 1, 1)).float()
        angle_B = (angle_B + 90.0).to(images_BCHW.device)  # kornia's angle is from the horizontal; rain falls down
        def smear(x, length, rows):
            zeros = torch.zeros(len(rows), device=x.device)
            return kornia.filters.motion_blur(x, max(length, 3), angle_B[rows], zeros, "constant") * length / 2

        streaks_B1HW = by_value(lengths, seeds_B1HW.to(images_BCHW), smear).clamp(0, 1)
        return images_BCHW * (1 - 0.1 * per_sample(bright_B, images_BCHW)) + per_sample(bright_B, images_BCHW) * streaks_B1HW
