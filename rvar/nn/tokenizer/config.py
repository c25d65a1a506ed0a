"""Typed size presets of the multi-scale VQ tokenizer (VAR's VQVAE)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Tuple

VAR_256_PATCH_NUMS: Tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
RESTOREVAR_512_PATCH_NUMS: Tuple[int, ...] = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)


@dataclass
class TokenizerConfig:
    """Hyper-parameters of :class:`rvar.nn.tokenizer.VQVAE`.

    Args:
        vocab_size: codebook size V, shared by every scale.
        z_channels: latent channels Cvae.
        ch: base width of the encoder/decoder (LDM vq-f16 style).
        ch_mult: width multipliers per resolution; ``len(ch_mult) - 1`` 2x downsamplings.
        num_res_blocks: residual blocks per resolution (the decoder uses one more).
        dropout: dropout inside residual blocks.
        beta: commitment loss weight.
        quant_resi: phi(h) = (1 - quant_resi) * h + quant_resi * conv(h).
        share_quant_resi: number of phi convolutions shared across scales (0: one per scale, 1: one for all).
        patch_nums: side of the token map at each scale, small to large; the last equals the latent side.
        using_sa: self-attention in the lowest-resolution stage; using_mid_sa: in the middle block.
        norm_groups: groups of every GroupNorm (VAR: 32). At width 32, 32 groups are per-channel instance
            norms that erase each channel's mean, i.e. the colour of flat regions; small widths want fewer.
    """

    vocab_size: int = 4096
    z_channels: int = 32
    ch: int = 160
    ch_mult: Tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    dropout: float = 0.0
    beta: float = 0.25
    quant_resi: float = 0.5
    share_quant_resi: int = 4
    patch_nums: Tuple[int, ...] = field(default_factory=lambda: VAR_256_PATCH_NUMS)
    using_sa: bool = True
    using_mid_sa: bool = True
    norm_groups: int = 32

    def __post_init__(self) -> None:
        self.ch_mult = tuple(int(c) for c in self.ch_mult)
        self.patch_nums = tuple(int(p) for p in self.patch_nums)
        if list(self.patch_nums) != sorted(self.patch_nums) or len(self.patch_nums) < 1:
            raise ValueError(f"patch_nums must be increasing, got {self.patch_nums}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def image_size(self) -> int:
        """Native image side: the last token map covers the whole latent."""
        return self.patch_nums[-1] * self.downsample

    @property
    def num_tokens(self) -> int:
        return sum(p * p for p in self.patch_nums)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["ch_mult"], d["patch_nums"] = list(self.ch_mult), list(self.patch_nums)
        return d

    # ---- presets -------------------------------------------------------------------------------------
    @classmethod
    def vq_f16_256(cls) -> "TokenizerConfig":
        """VAR's released ``vae_ch160v4096z32.pth`` at 256 px."""
        return cls()

    @classmethod
    def vq_f16_512(cls) -> "TokenizerConfig":
        """The same tokenizer with RestoreVAR's 512 px schedule (L = 2240)."""
        return cls(patch_nums=RESTOREVAR_512_PATCH_NUMS)

    @classmethod
    def tiny(cls, patch_nums: Tuple[int, ...] = (1, 2, 3, 4)) -> "TokenizerConfig":
        """The reference parity size: 64x64 images, V=64, ch=32 (trains on CPU in minutes)."""
        return cls(vocab_size=64, z_channels=32, ch=32, patch_nums=patch_nums)

    @classmethod
    def cpu_f8(cls) -> "TokenizerConfig":
        """The CPU demo size (``experiments/tiny``): 64x64 images, 8x downsampling to an 8x8 latent, V=256.

        One width (32) at every resolution, no residual blocks in the encoder stages (the decoder keeps one per
        resolution, the middle blocks stay), no attention: 0.29 M parameters; and one GroupNorm group: VAR's
        32 groups are, at width 32, per-channel instance norms that erase the colour of flat regions (a plain
        autoencoder of this layout reached 16.2 dB with them and 20.9 dB with one group after 200 steps).
        Shallow trains far faster per CPU second than deeper or wider layouts, and the 130 tokens of an 8x8
        latent are what a tiny prior can learn in minutes (with :meth:`cpu_f4`'s 341 its greedy samples stayed
        at 11 dB after 600 steps).
        """
        return cls(vocab_size=256, z_channels=32, ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=0,
                   patch_nums=(1, 2, 3, 4, 6, 8), using_sa=False, using_mid_sa=False, norm_groups=1)

    @classmethod
    def cpu_f4(cls) -> "TokenizerConfig":
        """A 4x variant of :meth:`cpu_f8`: 16x16 latent, patch_nums 1,2,4,8,16 (L = 341).

        Its continuous latent keeps more detail (plain autoencoders: 21.1-21.6 dB vs 19.4-20.2 dB for 8x after
        400 steps), but a tiny prior trained for minutes does not learn its 341 tokens (greedy samples at 11 dB
        after 600 steps), so the demo uses :meth:`cpu_f8`.
        """
        return cls(vocab_size=256, z_channels=32, ch=32, ch_mult=(1, 1, 1), num_res_blocks=0,
                   patch_nums=(1, 2, 4, 8, 16), using_sa=False, using_mid_sa=False, norm_groups=1)
