"""``rvar reconstruct``: tokenizer round trip of images, with PSNR per image."""
from __future__ import annotations

import argparse
import sys

from rvar.commands._batch import add_common_arguments, finish, plan_outputs, run_over_images
from rvar.inference import load_tokenizer_model, resolve_device, resolve_precision
from rvar.eval.metrics import mean, psnr_per_image

HELP = "encode, quantise and decode images with a tokenizer; prints PSNR"
DESCRIPTION = """Round-trip each image through the checkpoint's tokenizer (encoder -> multi-scale residual
quantisation -> decoder) and write the reconstruction under the input's file name. Prints the PSNR of each
image and the mean. Images at the tokenizer's native size keep their size exactly; others follow
--size-policy.

example:
  rvar import-checkpoint --vae vae_ch160v4096z32.pth -o vae.ckpt
  rvar reconstruct photos/ --ckpt vae.ckpt -o recon/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    plan = plan_outputs(args.inputs, args.output, args.batch_size)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model = load_tokenizer_model(args.ckpt, device, precision)
    scores = []

    def report(path, rgb_in, rgb_out):
        psnr = psnr_per_image(rgb_out[None], rgb_in[None]).item()
        scores.append(psnr)
        print(f"{path}\tPSNR {psnr:.2f} dB")

    result = run_over_images(model, plan, args.batch_size, args.size_policy, on_image=report, desc="reconstructing")
    if scores:
        print(f"mean\tPSNR {mean(scores):.2f} dB over {len(scores)} image(s)")
    sys.stdout.flush()
    return finish(result, args.output, "reconstructed")
