"""Import of the published checkpoints: VAR's ``vae_ch160v4096z32.pth`` and ``var_d16.pth``, RestoreVAR's
``restorevar.pth``. Architecture sizes are inferred from tensor shapes; head counts are not in the tensors and
must be given.

Key layouts (see ``tests/fixtures/*.keys.json``): the tokenizer's keys are rvar's own; the priors' parameter
names are rvar's except that some buffers are rebuilt from the sizes instead of stored, VAR's absolute
positions and AdaLN layers are dropped, and RestoreVAR's refiner lives under ``vae_refiner.``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import torch

from rvar.errors import CheckpointError
from rvar.nn.checkpoints import describe_mismatch, load_strict
from rvar.nn.prior import PriorConfig, RestoreVARPrior
from rvar.nn.refiner import LatentRefiner, RefinerConfig
from rvar.nn.tokenizer import VQVAE, TokenizerConfig

# buffers of the reference priors that depend only on the sizes: checked for shape, then rebuilt
PRIOR_REBUILT_BUFFERS = ("lvl_1L", "attn_bias_for_masking", "lvl_1L_cond", "freqs_cis", "freqs_cis_cross")
# parameters of the class-conditional VAR that a restoration prior does not use
VAR_DROPPED = re.compile(r"^(pos_start|pos_1LC|blocks\.\d+\.ada_lin\..*|head_nm\.ada_lin\..*|shared_ada_lin\..*)$")


@dataclass
class ImportReport:
    """What an import did, printed by ``rvar import-checkpoint``."""

    loaded: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    created: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @staticmethod
    def _summary(keys: Sequence[str], limit: int = 8) -> str:
        """Group keys by module: ``blocks.*.cross_attn (x160)``, ``pos_1LC``."""
        groups: Dict[str, int] = {}
        for k in keys:
            parts = re.sub(r"\.\d+(?=\.|$)", ".*", k).split(".")
            g = ".".join(parts[:3]) if parts[0] == "blocks" else (parts[0] if len(parts) > 1 else k)
            groups[g] = groups.get(g, 0) + 1
        items = [f"{g} (x{n})" if n > 1 else g for g, n in groups.items()]
        more = f", ... ({len(items) - limit} more groups)" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    def lines(self) -> List[str]:
        out = [f"loaded  {len(self.loaded):4d} tensors"]
        if self.dropped:
            out.append(f"dropped {len(self.dropped):4d} tensors: {self._summary(self.dropped)}")
        if self.created:
            out.append(f"created {len(self.created):4d} tensors (new, initialised): {self._summary(self.created)}")
        return out + self.notes


def _count(prefix_re: str, keys) -> int:
    return len({int(m.group(1)) for k in keys if (m := re.match(prefix_re, k))})


def _need(sd: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(f"{source}: missing key {key!r}; is this the right file?")
    return sd[key]


# ---- tokenizer -------------------------------------------------------------------------------------------
def infer_tokenizer_config(sd: Mapping[str, torch.Tensor], patch_nums: Sequence[int], source: str) -> TokenizerConfig:
    """Sizes of a VAR tokenizer state dict from its tensor shapes."""
    if not any(k.startswith("encoder.") for k in sd):
        raise CheckpointError(f"{source}: not a VAR tokenizer file (no encoder.* keys)")
    ch = _need(sd, "encoder.conv_in.weight", source).shape[0]
    levels = _count(r"^encoder\.down\.(\d+)\.", sd)
    ch_mult = tuple(int(_need(sd, f"encoder.down.{i}.block.0.conv1.weight", source).shape[0]) // ch
                    for i in range(levels))
    num_res_blocks = _count(r"^encoder\.down\.0\.block\.(\d+)\.", sd)
    vocab, z = _need(sd, "quantize.embedding.weight", source).shape
    if any(k.startswith("quantize.quant_resi.qresi_ls.") for k in sd):
        share = _count(r"^quantize\.quant_resi\.qresi_ls\.(\d+)\.", sd)
    else:
        share = 1 if any(k.startswith("quantize.quant_resi.qresi.") for k in sd) else 0
    return TokenizerConfig(vocab_size=int(vocab), z_channels=int(z), ch=int(ch), ch_mult=ch_mult,
                           num_res_blocks=num_res_blocks, share_quant_resi=share, patch_nums=tuple(patch_nums),
                           using_sa=f"encoder.down.{levels - 1}.attn.0.qkv.weight" in sd,
                           using_mid_sa="encoder.mid.attn_1.qkv.weight" in sd)


def import_tokenizer(sd: Mapping[str, torch.Tensor], patch_nums: Sequence[int], source: str) -> VQVAE:
    cfg = infer_tokenizer_config(sd, patch_nums, source)
    per_scale = _count(r"^quantize\.quant_resi\.(\d+)\.", sd)
    if cfg.share_quant_resi == 0 and per_scale != len(cfg.patch_nums):
        raise CheckpointError(f"{source}: has one phi layer per scale for {per_scale} scales "
                              f"but --patch-nums gives {len(cfg.patch_nums)}")
    vae = VQVAE(cfg)
    load_strict(vae, dict(sd), source)
    return vae.eval()


# ---- priors ----------------------------------------------------------------------------------------------
def _prior_config(sd: Mapping[str, torch.Tensor], vae: VQVAE, heads: int, source: str) -> PriorConfig:
    """The prior's sizes from its tensor shapes, on the tokenizer's patch_nums (its V and Cvae are checked)."""
    C, Cv = _need(sd, "word_embed.weight", source).shape
    hidden = _need(sd, "blocks.0.ffn.fc1.weight", source).shape[0]
    return PriorConfig.for_tokenizer(vae.config, source, depth=_count(r"^blocks\.(\d+)\.", sd), embed_dim=int(C),
                                     num_heads=heads, mlp_ratio=hidden / C, z_channels=int(Cv),
                                     vocab_size=int(_need(sd, "head.weight", source).shape[0]),
                                     num_classes=int(_need(sd, "class_emb.weight", source).shape[0]) - 1)


def _check_heads(sd: Mapping[str, torch.Tensor], heads: int, source: str) -> None:
    key = "blocks.0.attn.scale_mul_1H11"
    if key in sd and sd[key].shape[1] != heads:
        raise CheckpointError(f"{source}: was trained with {sd[key].shape[1]} heads, --heads says {heads}")


def _check_patch_nums(sd: Mapping[str, torch.Tensor], patch_nums: Sequence[int], source: str, strict_L: bool) -> None:
    levels = _need(sd, "lvl_embed.weight", source).shape[0]
    L = sum(p * p for p in patch_nums)
    if strict_L and levels != len(patch_nums):
        raise CheckpointError(f"{source}: has {levels} scales but --patch-nums gives {len(patch_nums)}")
    if strict_L and "lvl_1L" in sd and sd["lvl_1L"].shape[-1] != L:
        raise CheckpointError(f"{source}: was built for L={sd['lvl_1L'].shape[-1]} tokens, --patch-nums gives L={L}")


def import_restorevar(sd: Mapping[str, torch.Tensor], vae: VQVAE, heads: int, refiner_heads: int,
                      source: str) -> Tuple[RestoreVARPrior, LatentRefiner, ImportReport]:
    """RestoreVAR's ``restorevar.pth``: every parameter must match (strict); size-only buffers are rebuilt."""
    if not any(k.startswith("blocks.0.cross_attn.") for k in sd):
        raise CheckpointError(f"{source}: has no cross-attention: a class-conditional VAR file? use it as --var to "
                              "initialise a prior (it is imported that way when it has no vae_refiner.* keys)")
    _check_patch_nums(sd, vae.patch_nums, source, strict_L=True)
    _check_heads(sd, heads, source)
    prior = RestoreVARPrior(_prior_config(sd, vae, heads, source))
    dropped = [k for k in sd if k in PRIOR_REBUILT_BUFFERS or k.endswith(".zero_k_bias")]
    ref_sd = {k[len("vae_refiner."):]: v for k, v in sd.items() if k.startswith("vae_refiner.")}
    prior_sd = {k: v for k, v in sd.items() if not k.startswith("vae_refiner.") and k not in dropped}
    _check_rebuilt(sd, prior, source)
    load_strict(prior, prior_sd, source)
    if not ref_sd:
        raise CheckpointError(f"{source}: has no vae_refiner.* keys: not a complete restorevar.pth")
    refiner = LatentRefiner(_infer_refiner_config(ref_sd, refiner_heads, source))
    load_strict(refiner, ref_sd, source)
    return prior.eval(), refiner.eval(), ImportReport(
        loaded=list(prior_sd) + [f"vae_refiner.{k}" for k in ref_sd], dropped=dropped,
        notes=[f"size-only buffers checked and rebuilt: {', '.join(PRIOR_REBUILT_BUFFERS)}"])


def _check_rebuilt(sd: Mapping[str, torch.Tensor], prior: RestoreVARPrior, source: str) -> None:
    expect = {"lvl_1L": (1, prior.L), "attn_bias_for_masking": (1, 1, prior.L, prior.L),
              "freqs_cis": tuple(prior.rope_cos.shape), "freqs_cis_cross": tuple(prior.rope_cos_cond.shape)}
    bad = [f"{k} {tuple(sd[k].shape)} vs {shape}" for k, shape in expect.items() if k in sd and tuple(sd[k].shape) != shape]
    if bad:
        raise CheckpointError(f"{source}: does not fit the model: {describe_mismatch([], [], bad)}")


def _infer_refiner_config(sd: Mapping[str, torch.Tensor], heads: int, source: str) -> RefinerConfig:
    dim, in_dim = _need(sd, "proj_in.weight", source).shape
    cfg = RefinerConfig(seq_len=_need(sd, "pos_embedding", source).shape[1],
                        seq_len_cond=_need(sd, "pos_embedding_cond", source).shape[1], in_dim=int(in_dim),
                        in_dim_cond=_need(sd, "proj_in_cond.weight", source).shape[1],
                        out_dim=_need(sd, "proj_out.weight", source).shape[0], dim=int(dim),
                        depth=_count(r"^transformer\.layers\.(\d+)\.", sd), heads=heads,
                        mlp_dim=_need(sd, "transformer.layers.0.1.net.1.weight", source).shape[0])
    if dim % heads:
        raise CheckpointError(f"{source}: refiner width {dim} is not divisible by --refiner-heads {heads}")
    return cfg


def init_prior_from_var(sd: Mapping[str, torch.Tensor], vae: VQVAE, heads: int,
                        source: str) -> Tuple[RestoreVARPrior, ImportReport]:
    """Initialise a RestoreVAR prior from the class-conditional ``var_d16.pth`` at the tokenizer's patch_nums.

    Transfers blocks, embeddings and head; drops absolute positions and AdaLN; the cross-attention and
    condition layers are new, with zero gains so the initial prior behaves like the unconditional VAR.
    """
    _check_heads(sd, heads, source)
    prior = RestoreVARPrior(_prior_config(sd, vae, heads, source))
    own = prior.state_dict()
    report = ImportReport()
    take: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if VAR_DROPPED.match(k) or k in PRIOR_REBUILT_BUFFERS or k.endswith(".zero_k_bias"):
            report.dropped.append(k)
        elif k not in own:
            raise CheckpointError(f"{source}: unexpected key {k!r}: not a VAR/RestoreVAR prior file")
        elif tuple(v.shape) != tuple(own[k].shape):
            if k == "lvl_embed.weight":  # a different number of scales: level embeddings start fresh
                report.dropped.append(k)
                report.notes.append(f"lvl_embed has {v.shape[0]} scales in the file, {own[k].shape[0]} here: re-initialised")
            else:
                raise CheckpointError(f"{source}: mis-shaped key {k}: {tuple(v.shape)} vs {tuple(own[k].shape)}")
        else:
            take[k] = v
    missing_core = [k for k in own if k.startswith(("blocks.", "head.", "word_embed.")) and "cross_attn" not in k
                    and k not in take]
    if missing_core:
        raise CheckpointError(f"{source}: does not fit the model: {describe_mismatch(missing_core, [], [])}")
    prior.load_state_dict(take, strict=False)
    report.loaded = sorted(take)
    report.created = [k for k in own if k not in take]
    return prior.eval(), report
