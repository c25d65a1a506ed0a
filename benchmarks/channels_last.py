"""Inference in channels-last memory order (rvar.nn.tokenizer.vqvae.CHANNELS_LAST) against the default order, side by
side in one run: the tokenizer's decode and encode of 49 tiles of 64 px, and `rvar restore`'s whole path on 256 px
images, for a restorer checkpoint (or the shipped tokenizer alone), with the largest output difference.

    python benchmarks/channels_last.py [RESTORER.ckpt]
"""
import sys
import time

import torch

import rvar.nn.tokenizer.vqvae as vqvae
from rvar.inference import apply_any_size, load_restoration_model, load_tokenizer_model
from rvar.demo.runner import SHIPPED_TOKENIZER

torch.manual_seed(0)
path = sys.argv[1] if len(sys.argv) > 1 else str(SHIPPED_TOKENIZER)
loaded = (load_restoration_model if len(sys.argv) > 1 else load_tokenizer_model)(path, torch.device("cpu"), "fp32")
tok = loaded.module.tokenizer if hasattr(loaded.module, "tokenizer") else loaded.module
side = tok.image_size
tiles = torch.rand(49, 3, side, side) * 2 - 1
latent = torch.randn(49, tok.config.z_channels, side // 8, side // 8)
images = [torch.rand(3, 256, 256) for _ in range(3)]


def timed(fn, repeats=5):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


jobs = {"decode 49 tiles": lambda: tok.decode(latent), "encode 49 tiles": lambda: tok.encode_condition(tiles),
        f"{loaded.kind} on three 256 px images": lambda: [apply_any_size(loaded.fn, im, loaded.native, batch_size=16)
                                                         for im in images]}
print(f"{path}, {torch.get_num_threads()} threads")
print(f"{'job':36s} {'default s':>10s} {'channels-last s':>16s} {'speed-up':>9s} {'max diff':>9s}")
with torch.inference_mode():
    for name, job in jobs.items():
        results = {}
        for flag in (False, True, False, True):  # interleaved: the machine's drift hits both alike
            vqvae.CHANNELS_LAST = flag
            seconds = timed(job, 3)
            results.setdefault(flag, []).append(seconds)
            out = job()
            results[(flag, "out")] = torch.stack(out) if isinstance(out, list) else out
        a, b = min(results[False]), min(results[True])
        diff = float((results[(False, "out")] - results[(True, "out")]).abs().max())
        print(f"{name:36s} {a:10.3f} {b:16.3f} {a / b:8.2f}x {diff:9.1e}")
