"""``rvar restore``: restore photos with a RestoreVAR (or baseline) checkpoint."""
from __future__ import annotations

import argparse
from typing import Optional

from rvar.commands._batch import add_common_arguments, finish, plan_outputs, run_over_images
from rvar.inference import load_restoration_model, resolve_device, resolve_precision

HELP = "restore images (files or folders) with a restorer or baseline checkpoint"
DESCRIPTION = """Restore each image with the checkpoint's model: RestoreVAR (tokenizer -> prior with a KV cache,
greedy or expected codewords (--decoding) -> refiner -> decoder) or a baseline (LDM, NAFNet). Outputs keep the input's file name, size and mode
(grey stays grey, RGBA keeps its alpha); folders keep their layout. Images at the model's native size are
processed as is; others follow --size-policy. An unreadable input is reported and skipped (exit status 1).

examples:
  rvar restore photo.jpg --ckpt outputs/demo/restorevar.ckpt -o restored/
  rvar restore photos/ --ckpt restorer.ckpt -o restored/ --precision bf16 --size-policy resize
  rvar restore photos/ --ckpt outputs/demo/ldm.ckpt -o restored_ldm/ --steps 20
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps of diffusion baselines")
    add_fidelity_argument(parser)


def add_fidelity_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fidelity", type=float, default=None, metavar="W",
                        help="RestoreVAR's fidelity path, 0 to 1. A checkpoint with a learned gate (trained by the "
                             "fidelity stage, as `rvar demo` does) passes input detail where the gate finds the input "
                             "trustworthy; W scales that (default 1; 0: the latent output alone). Without a gate, W x "
                             "the detail the tokenizer loses on the input (input minus its round trip) is added to the "
                             "output (default 0, as published): keeps the fine texture of clean and mildly degraded "
                             "photos, and also W of fine noise or rain")
    from rvar.nn.prior.sampling import DECODINGS

    parser.add_argument("--decoding", choices=DECODINGS, default=None,
                        help="how RestoreVAR's prior turns each scale's token probabilities into the latent: greedy "
                             "(the most likely token, as published) or expected (the codebook averaged over the "
                             "probabilities, the better guess of an unsure prior). Default: the checkpoint's own "
                             "(`rvar demo` trains with expected); baselines ignore it")


def check_fidelity(value: Optional[float]) -> Optional[float]:
    from rvar.errors import UserError

    if value is not None and not 0.0 <= value <= 1.0:
        raise UserError(f"--fidelity must be between 0 and 1, got {value:g}")
    return value


def run(args: argparse.Namespace) -> int:
    plan = plan_outputs(args.inputs, args.output, args.batch_size)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model = load_restoration_model(args.ckpt, device, precision, steps=args.steps,
                                   fidelity=check_fidelity(args.fidelity), decoding=args.decoding)
    result = run_over_images(model, plan, args.batch_size, args.size_policy)
    return finish(result, args.output, f"restored ({model.description}, {precision})")
