"""Typed size presets of the RestoreVAR prior."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Optional, Tuple

from rvar.errors import UserError
from rvar.nn.prior.sampling import DECODINGS
from rvar.nn.tokenizer.config import TokenizerConfig

GEOMETRY = ("patch_nums", "vocab_size", "z_channels")  # the token geometry, owned by the tokenizer


@dataclass
class PriorConfig:
    """Hyper-parameters of :class:`rvar.nn.prior.RestoreVARPrior`.

    Args:
        depth: transformer blocks. embed_dim: width C. num_heads: attention heads (not stored in tensors).
        mlp_ratio: FFN hidden size / C.
        patch_nums / vocab_size / z_channels: the tokenizer's token geometry; None: filled in from the
            tokenizer by :meth:`for_tokenizer`, which also checks values that are given.
        num_classes: size of VAR's class table (the start token uses the extra "null" row ``num_classes``).
        attention: registered attention variant (``rvar plugins --kind attention``) for self- and cross-attention.
        norm_eps: epsilon of the parameter-free LayerNorms.
        rope_base: RoPE frequency base.
        drop_rate / attn_drop_rate: dropout (0 in RestoreVAR's training).
        drop_path_rate: stochastic depth, spread by ``linspace(0, rate, depth)`` over the blocks, on the self-attention,
            FFN and cross-attention branches per sample (RestoreVAR trains with ``0.1 * depth / 24``).
        condition_gain_init: initial value of every cross-attention gain and of the global-embedding gain.
            0 (RestoreVAR): fine-tuned from VAR, the prior starts as the unconditional model. A prior trained
            from scratch learns to use the condition much sooner from a non-zero start (the tiny configs use 1).
        aligned_condition: also add the degraded latent, area-resized to each scale's grid and projected, to that
            scale's input tokens (parameter ``word_embed_aligned``), so every token sees the degraded image at its
            own position besides the cross-attention. Off in RestoreVAR (cross-attention only), whose d16 prior
            was pre-trained on ImageNet for weeks; a tiny prior trained for CPU minutes learns a position-aligned
            input far sooner than to look up its position through attention.
        decoding: how :meth:`~rvar.nn.prior.RestoreVARPrior.sample` turns each scale's logits into the codewords it
            adds to the latent and feeds to the next scale. ``"greedy"`` (RestoreVAR): the most likely token's
            codeword. ``"expected"``: the codebook averaged over the predicted probabilities
            (:func:`~rvar.nn.prior.sampling.expected_codewords`), so an unsure prior adds the mean of its candidates
            rather than one of them at full strength. Not stored in tensors: a checkpoint's prior can be decoded
            either way (``PriorModule(decoding=...)``, ``RefinerModule(prior_decoding=...)``).
    """

    depth: int = 16
    embed_dim: int = 1024
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_nums: Optional[Tuple[int, ...]] = None
    vocab_size: Optional[int] = None
    z_channels: Optional[int] = None
    num_classes: int = 1000
    attention: str = "l2norm"
    norm_eps: float = 1e-6
    rope_base: float = 10000.0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    condition_gain_init: float = 0.0
    aligned_condition: bool = False
    decoding: str = "greedy"

    def __post_init__(self) -> None:
        if self.decoding not in DECODINGS:
            raise UserError(f"prior decoding {self.decoding!r} is not one of {', '.join(DECODINGS)}")
        self.patch_nums = None if self.patch_nums is None else tuple(int(p) for p in self.patch_nums)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if (self.embed_dim // self.num_heads) % 4:
            raise ValueError("2D RoPE needs a head dimension divisible by 4")

    @property
    def num_tokens(self) -> int:
        return sum(p * p for p in self.patch_nums)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["patch_nums"] = list(self.patch_nums) if self.patch_nums is not None else None
        return d

    @classmethod
    def for_tokenizer(cls, tokenizer: TokenizerConfig, source: str = "", **sizes: Any) -> "PriorConfig":
        """The prior of ``sizes`` (fields) on ``tokenizer``'s geometry. The one check that a prior fits its tokenizer:
        geometry in ``sizes`` (old files state it) must be the tokenizer's, else a UserError (prefixed ``source``)."""
        given = cls(**sizes)
        diffs = [f"{name} {getattr(given, name)} (prior) vs {getattr(tokenizer, name)} (tokenizer)"
                 for name in GEOMETRY if getattr(given, name) not in (None, getattr(tokenizer, name))]
        if diffs:
            raise UserError(f"{source + ': ' if source else ''}the prior does not fit the tokenizer: " + "; ".join(diffs))
        return replace(given, **{name: getattr(tokenizer, name) for name in GEOMETRY})

    # ---- presets -------------------------------------------------------------------------------------
    @classmethod
    def d16_512(cls) -> "PriorConfig":
        """RestoreVAR's released model: VAR-d16 at 512 px, L = 2240 tokens."""
        return cls.for_tokenizer(TokenizerConfig.vq_f16_512())

    @classmethod
    def d16_256(cls) -> "PriorConfig":
        """VAR-d16 geometry at 256 px (the class-conditional ``var_d16.pth`` schedule, L = 680)."""
        return cls.for_tokenizer(TokenizerConfig.vq_f16_256())

    @classmethod
    def tiny(cls, patch_nums: Tuple[int, ...] = (1, 2, 3, 4), vocab_size: int = 64) -> "PriorConfig":
        """The reference parity size: depth 2, width 128, 2 heads, 64x64 images."""
        return cls(depth=2, embed_dim=128, num_heads=2, patch_nums=patch_nums, vocab_size=vocab_size, z_channels=32)
