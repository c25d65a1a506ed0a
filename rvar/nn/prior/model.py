"""The RestoreVAR prior: a VAR transformer conditioned on the degraded image through cross-attention.

Paper: RestoreVAR (Rajagopalan, Narayan, Patel; arXiv 2505.18047), built on VAR (Tian et al., NeurIPS 2024).
Reference code: sudraj2002/RestoreVAR ``models/var.py`` and ``models/basic_var.py``. Parameter names follow
the released ``restorevar.pth`` (minus the refiner, which is :mod:`rvar.nn.refiner`); buffers that only depend
on the sizes (masks, level ids, RoPE tables) are rebuilt, not stored.

Shapes: B batch, L tokens of all scales, l tokens of one scale, S condition tokens, C width,
Cv tokenizer latent channels, V vocabulary, H heads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from rvar.nn.prior.attention import CrossAttention, SelfAttention, rope_angles_2d
from rvar.nn.prior.config import PriorConfig
from rvar.nn.prior.sampling import expected_codewords, sample_tokens
from rvar.nn.tokenizer.quantizer import MultiScaleQuantizer


class DropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x), approximate="tanh")))


class PriorBlock(nn.Module):
    """Self-attention (block-causal), FFN, then cross-attention to the condition; pre-norm without AdaLN."""

    def __init__(self, cfg: PriorConfig, drop_path: float) -> None:
        super().__init__()
        C = cfg.embed_dim
        self.attn = SelfAttention(C, cfg.num_heads, cfg.attention, cfg.attn_drop_rate, cfg.drop_rate)
        self.ffn = FFN(C, round(C * cfg.mlp_ratio), cfg.drop_rate)
        self.cross_attn = CrossAttention(C, cfg.num_heads, cfg.attention, cfg.attn_drop_rate, cfg.drop_rate)
        self.ln_wo_grad = nn.LayerNorm(C, eps=cfg.norm_eps, elementwise_affine=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x_BLC, cond_BSC, attn_bias, rope_q, rope_k) -> torch.Tensor:
        x_BLC = x_BLC + self.drop_path(self.attn(self.ln_wo_grad(x_BLC), attn_bias, *rope_q))
        x_BLC = x_BLC + self.drop_path(self.ffn(self.ln_wo_grad(x_BLC)))
        return x_BLC + self.drop_path(self.cross_attn(x_BLC, cond_BSC, *rope_q, *rope_k))


@dataclass
class SampleOutput:
    f_hat: torch.Tensor  # (B, Cv, h, w) quantised latent after the last scale (before the refiner)
    indices: List[torch.Tensor]  # per scale (B, l)
    last_block: torch.Tensor  # (B, L, C) last block's hidden states of all scales: the refiner's condition


class RestoreVARPrior(nn.Module):
    """Next-scale prediction of the clean image's tokens given the degraded image's latent.

    Args:
        config: sizes, see :class:`PriorConfig` and its presets.
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        if None in (config.patch_nums, config.vocab_size, config.z_channels):
            raise ValueError("PriorConfig lacks the token geometry: build it with PriorConfig.for_tokenizer")
        self.config = cfg = config
        C, Cv = cfg.embed_dim, cfg.z_channels
        self.patch_nums = cfg.patch_nums
        self.L, self.first_l = cfg.num_tokens, cfg.patch_nums[0] ** 2
        self.begin_ends = []
        cur = 0
        for pn in self.patch_nums:
            self.begin_ends.append((cur, cur + pn * pn))
            cur += pn * pn
        # 1. token, start and level embeddings
        self.word_embed = nn.Linear(Cv, C)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)  # the start token is the "null class" row
        self.lvl_embed = nn.Embedding(len(self.patch_nums), C)
        # 2. condition path: projection of the degraded latent, its embedding, and a global summary
        self.cond_proj4 = nn.Linear(Cv, Cv)
        self.word_embed_cond = nn.Linear(Cv, C)
        self.lvl_embed_cond = nn.Embedding(1, C)
        self.global_embed = nn.Linear(Cv, C)
        self.global_embed_gain = nn.Parameter(torch.tensor(0.0))
        if cfg.aligned_condition:
            self.word_embed_aligned = nn.Linear(Cv, C)
        # 3. blocks and head
        dpr = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.ModuleList([PriorBlock(cfg, dpr[i]) for i in range(cfg.depth)])
        self.head_nm = nn.LayerNorm(C, eps=cfg.norm_eps, elementwise_affine=False)
        self.head = nn.Linear(C, cfg.vocab_size)
        # 4. buffers that only depend on the sizes (not saved)
        lvl = torch.cat([torch.full((pn * pn,), i) for i, pn in enumerate(self.patch_nums)])
        self.register_buffer("lvl_1L", lvl.view(1, self.L), persistent=False)
        self.register_buffer("attn_bias_for_masking",
                             torch.where(lvl.view(-1, 1) >= lvl.view(1, -1), 0.0, -torch.inf).view(1, 1, self.L, self.L),
                             persistent=False)
        head_dim = C // cfg.num_heads
        ang = rope_angles_2d(head_dim, self.patch_nums, cfg.rope_base)
        ang_cond = rope_angles_2d(head_dim, [self.patch_nums[-1]], cfg.rope_base)
        self.register_buffer("rope_cos", ang.cos(), persistent=False)
        self.register_buffer("rope_sin", ang.sin(), persistent=False)
        self.register_buffer("rope_cos_cond", ang_cond.cos(), persistent=False)
        self.register_buffer("rope_sin_cond", ang_cond.sin(), persistent=False)
        self.init_weights()

    def set_drop_path_rate(self, rate: float) -> None:
        """Stochastic depth ``linspace(0, rate, depth)`` over the blocks (``config.drop_path_rate`` at build time);
        live in train mode only. No parameters change, so a loaded prior can be given another rate."""
        self.config = replace(self.config, drop_path_rate=float(rate))
        for block, p in zip(self.blocks, torch.linspace(0, rate, len(self.blocks)).tolist()):
            block.drop_path = DropPath(p) if p > 0 else nn.Identity()

    def set_decoding(self, decoding: str) -> None:
        """Decode :meth:`sample` ``"greedy"`` or ``"expected"`` (``PriorConfig.decoding``); no parameters change."""
        self.config = replace(self.config, decoding=decoding)  # PriorConfig validates it

    # ---- initialisation ------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """VAR-style init: truncated normal sqrt(1/3C), residual projections scaled by depth, condition gains at
        ``condition_gain_init`` (zero for RestoreVAR)."""
        std = math.sqrt(1 / self.config.embed_dim / 3)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            block.attn.proj.weight.data.div_(math.sqrt(2 * self.config.depth))
            block.ffn.fc2.weight.data.div_(math.sqrt(2 * self.config.depth))
            nn.init.constant_(block.cross_attn.gain, self.config.condition_gain_init)
        self.head.weight.data.mul_(0.02)
        nn.init.constant_(self.global_embed_gain, self.config.condition_gain_init)

    # ---- shared pieces -------------------------------------------------------------------------------
    def _embed_condition(self, cond_BSCv: torch.Tensor):
        """Condition latent -> (start tokens (B, first_l, C), condition tokens (B, S, C))."""
        B = cond_BSCv.shape[0]
        proj = self.cond_proj4(cond_BSCv.to(self.dtype))
        global_B1C = self.global_embed_gain * self.global_embed(proj.mean(dim=1, keepdim=True))
        null_class = torch.full((B,), self.config.num_classes, device=cond_BSCv.device, dtype=torch.long)
        sos = self.class_emb(null_class).unsqueeze(1).expand(B, self.first_l, -1) + global_B1C
        cond_BSC = self.word_embed_cond(proj) + self.lvl_embed_cond.weight[0]
        return sos, cond_BSC

    def _aligned_condition(self, cond_BSCv: torch.Tensor) -> Optional[torch.Tensor]:
        """(B, L, C): the degraded latent area-resized to every scale's grid and embedded, one token per
        position of every scale (``PriorConfig.aligned_condition``); None when the switch is off."""
        if not self.config.aligned_condition:
            return None
        side = self.patch_nums[-1]
        grid_BChw = cond_BSCv.to(self.dtype).transpose(1, 2).unflatten(2, (side, side))
        scales = [F.interpolate(grid_BChw, size=(pn, pn), mode="area").flatten(2) for pn in self.patch_nums]
        return self.word_embed_aligned(torch.cat(scales, dim=2).transpose(1, 2))  # (B, L, C)

    def _run_blocks(self, x_BLC, cond_BSC, attn_bias, start: int, end: int) -> torch.Tensor:
        rope_q = (self.rope_cos[start:end], self.rope_sin[start:end])
        rope_k = (self.rope_cos_cond, self.rope_sin_cond)
        for block in self.blocks:
            x_BLC = block(x_BLC, cond_BSC, attn_bias, rope_q, rope_k)
        return x_BLC

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype: fp32 for training, bf16 after ``.to(torch.bfloat16)`` for fast inference."""
        return self.word_embed.weight.dtype

    def logits(self, h_BLC: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(h_BLC)).float()

    # ---- teacher forcing -----------------------------------------------------------------------------
    def forward(self, x_BLCv_wo_first_l: torch.Tensor, cond_BSCv: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing logits (B, L, V) from the clean tokens' inputs and the degraded latent."""
        sos, cond_BSC = self._embed_condition(cond_BSCv)
        x_BLC = torch.cat((sos, self.word_embed(x_BLCv_wo_first_l.to(self.dtype))), dim=1)
        x_BLC = x_BLC + self.lvl_embed(self.lvl_1L.expand(x_BLC.shape[0], -1))
        aligned_BLC = self._aligned_condition(cond_BSCv)
        if aligned_BLC is not None:
            x_BLC = x_BLC + aligned_BLC
        return self.logits(self._run_blocks(x_BLC, cond_BSC, self.attn_bias_for_masking, 0, self.L))

    # ---- sampling ------------------------------------------------------------------------------------
    def placeholder(self, cond_BSCv: torch.Tensor) -> SampleOutput:
        """Zeros shaped like :meth:`sample`'s output, for a refiner that does not read the prior
        (``RefinerConfig.reads_prior``, the no-prior ablation): nothing is sampled."""
        B, side = cond_BSCv.shape[0], self.patch_nums[-1]
        return SampleOutput(cond_BSCv.new_zeros(B, self.config.z_channels, side, side, dtype=torch.float32), [],
                            cond_BSCv.new_zeros(B, self.L, self.config.embed_dim, dtype=torch.float32))

    def set_kv_cache(self, enable: bool) -> None:
        for block in self.blocks:
            block.attn.kv_caching(enable)
            block.cross_attn.kv_caching(enable)

    def sample(self, cond_BSCv: torch.Tensor, quantizer: MultiScaleQuantizer, top_k: int = 0, top_p: float = 0.0,
               temperature: float = 1.0, generator: Optional[torch.Generator] = None,
               use_cache: bool = True) -> SampleOutput:
        """:meth:`rollout` without gradients (inference, and the frozen prior of the later stages)."""
        with torch.no_grad():
            return self.rollout(cond_BSCv, quantizer, top_k, top_p, temperature, generator, use_cache)

    def rollout(self, cond_BSCv: torch.Tensor, quantizer: MultiScaleQuantizer, top_k: int = 0, top_p: float = 0.0,
                temperature: float = 1.0, generator: Optional[torch.Generator] = None,
                use_cache: bool = True) -> SampleOutput:
        """Generate all scales, coarse to fine; greedy (argmax) unless top_k/top_p/temperature say otherwise.

        With ``config.decoding == "expected"`` each scale adds the expected codeword under the (filtered, tempered)
        probabilities instead of the chosen token's (``indices`` still report the chosen tokens); a ``generator``
        (random sampling asked for) keeps the sampled tokens' codewords.

        Args:
            cond_BSCv: the degraded image's latent, ``VQVAE.encode_condition(degraded)``.
            quantizer: the tokenizer's quantiser (codebook and phi layers).
            use_cache: one pass per scale with a KV cache; ``False`` recomputes the prefix (for benchmarks).
        """
        B = cond_BSCv.shape[0]
        expected = self.config.decoding == "expected" and generator is None
        sos, cond_BSC = self._embed_condition(cond_BSCv)
        lvl_pos = self.lvl_embed(self.lvl_1L)  # (1, L, C)
        aligned_BLC = self._aligned_condition(cond_BSCv)
        if aligned_BLC is not None:
            lvl_pos = lvl_pos + aligned_BLC  # (B, L, C): added to every scale's input like the level embedding
        token_map = sos + lvl_pos[:, : self.first_l]
        side = self.patch_nums[-1]
        f_hat = torch.zeros(B, quantizer.Cvae, side, side, device=sos.device)  # accumulated in fp32
        indices, hidden, prefix = [], [], []
        self.set_kv_cache(use_cache)
        try:
            for si, pn in enumerate(self.patch_nums):
                start, end = self.begin_ends[si]
                if use_cache:
                    h_BlC = self._run_blocks(token_map, cond_BSC, None, start, end)
                else:
                    prefix.append(token_map)
                    mask = self.attn_bias_for_masking[:, :, :end, :end]
                    h_BlC = self._run_blocks(torch.cat(prefix, 1), cond_BSC, mask, 0, end)[:, start:end]
                hidden.append(h_BlC)
                logits_BlV = self.logits(h_BlC)
                idx_Bl = sample_tokens(logits_BlV, top_k, top_p, temperature, generator)
                indices.append(idx_Bl)
                if expected:
                    code_BlC = expected_codewords(logits_BlV, quantizer.embedding.weight, top_k, top_p,
                                                  temperature)
                    code_map = code_BlC.transpose(1, 2).reshape(B, quantizer.Cvae, pn, pn)
                else:
                    code_map = quantizer.lookup(idx_Bl, pn)
                f_hat, next_map = quantizer.next_autoregressive_input(si, f_hat, code_map)
                if si + 1 < len(self.patch_nums):
                    nstart, nend = self.begin_ends[si + 1]
                    next_BlCv = next_map.flatten(2).transpose(1, 2).to(self.dtype)
                    token_map = self.word_embed(next_BlCv) + lvl_pos[:, nstart:nend]
        finally:
            self.set_kv_cache(False)
        return SampleOutput(f_hat, indices, torch.cat(hidden, dim=1))
