"""``rvar import-checkpoint``: convert the published VAR / RestoreVAR files into rvar checkpoints."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Tuple

from rvar.errors import UserError
from rvar.nn.checkpoints import read_torch_file, save_checkpoint
from rvar.nn.official import import_restorevar, import_tokenizer, init_prior_from_var
from rvar.nn.restorer import Restorer
from rvar.nn.tokenizer import RESTOREVAR_512_PATCH_NUMS, VAR_256_PATCH_NUMS

HELP = "convert VAR's vae/var_d16 or RestoreVAR's restorevar.pth into an rvar checkpoint"
DESCRIPTION = """Convert published weights into one rvar checkpoint. Sizes are read from the tensor shapes; head
counts are not stored in the files, so give them with --heads / --refiner-heads when they differ from d16's.

  --vae only                     -> a tokenizer checkpoint (patch_nums default: VAR's 256 px schedule)
  --vae + --var var_d16.pth      -> a prior initialised from the class-conditional VAR: blocks, embeddings
                                    and head transferred; absolute positions and AdaLN dropped; cross-attention
                                    and condition layers created with zero gains (patch_nums default: the
                                    512 px schedule 1,2,3,4,6,9,13,18,24,32)
  --vae + --var restorevar.pth   -> a complete restorer (prior + refiner), loaded strictly, for `rvar restore`

examples:
  rvar import-checkpoint --vae vae_ch160v4096z32.pth -o checkpoints/vae.ckpt
  rvar import-checkpoint --vae vae_ch160v4096z32.pth --var var_d16.pth -o checkpoints/restorevar_init.ckpt
  rvar import-checkpoint --vae vae_ch160v4096z32.pth --var restorevar.pth -o checkpoints/restorevar.ckpt
"""


def parse_patch_nums(text: str) -> Tuple[int, ...]:
    try:
        nums = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise UserError(f"--patch-nums {text!r}: expected comma-separated integers like 1,2,3,4") from None
    if not nums or any(n < 1 for n in nums) or list(nums) != sorted(set(nums)):
        raise UserError(f"--patch-nums {text!r}: expected strictly increasing positive integers")
    return nums


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", required=True, help="VAR tokenizer file (vae_ch160v4096z32.pth)")
    parser.add_argument("--var", help="var_d16.pth (initialise a prior) or restorevar.pth (complete restorer)")
    parser.add_argument("--patch-nums", help="token-map sides per scale, e.g. 1,2,3,4,6,9,13,18,24,32")
    parser.add_argument("--heads", type=int, default=16, help="attention heads of the prior (default 16)")
    parser.add_argument("--refiner-heads", type=int, default=6, help="attention heads of the refiner (default 6)")
    parser.add_argument("--output", "-o", required=True, help="the rvar checkpoint to write (.ckpt)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    for src in filter(None, (args.vae, args.var)):
        if Path(src).resolve() == out.resolve():
            raise UserError(f"{out}: refusing to overwrite an input file; choose another --output")
    if args.heads < 1 or args.refiner_heads < 1:
        raise UserError("--heads and --refiner-heads must be positive")
    default = RESTOREVAR_512_PATCH_NUMS if args.var else VAR_256_PATCH_NUMS
    patch_nums = parse_patch_nums(args.patch_nums) if args.patch_nums else default
    vae = import_tokenizer(read_torch_file(args.vae), patch_nums, args.vae)
    meta = {"source_vae": str(args.vae), "patch_nums": list(patch_nums)}
    lines = [f"tokenizer: V={vae.V}, Cvae={vae.Cvae}, ch={vae.config.ch}, ch_mult={vae.config.ch_mult}, "
             f"patch_nums={patch_nums} ({vae.image_size} px)"]
    network = vae
    if args.var:
        var_sd = read_torch_file(args.var)
        meta["source_var"] = str(args.var)
        if any(k.startswith("vae_refiner.") or ".cross_attn." in k for k in var_sd):  # RestoreVAR, not VAR
            prior, refiner, report = import_restorevar(var_sd, vae, args.heads, args.refiner_heads, args.var)
            what = "RestoreVAR prior + refiner (strict)"
        else:
            prior, report = init_prior_from_var(var_sd, vae, args.heads, args.var)
            refiner, what = None, "prior initialised from class-conditional VAR"
        network, meta["import"] = Restorer.from_networks(vae, prior, refiner), what
        c = prior.config
        lines.append(f"{what}: depth={c.depth}, width={c.embed_dim}, heads={c.num_heads}, L={prior.L}")
        lines += ["  " + line for line in report.lines()]
    save_checkpoint(out, network, meta)
    params = sum(v.numel() for v in network.state_dict().values() if v.is_floating_point())
    lines.append(f"wrote {out} ({params:,} parameters and buffers)")
    print("\n".join(lines), file=sys.stderr)
    return 0
