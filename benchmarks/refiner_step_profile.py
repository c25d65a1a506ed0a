"""Where one training step of the demo's refiner spends its time (issue #11, BENCHMARKS.md fourth round).

    python benchmarks/refiner_step_profile.py PRIOR.ckpt [--dim 96 --depth 2 --heads 2 --mlp 192] [--pixel]

Batch 16 of 64 px tiles from 256 px degraded regions (the demo's data), built in this process (no workers),
2 threads; 5 timed steps after one warm-up. Prints milliseconds per step for each part: making the batch, the
Kornia degradations, the tokenizer's encodes, the prior's greedy sampling, the refiner, the decoder of the
optional pixel loss, backward and the optimizer.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from einops import rearrange

from rvar.data.datamodule import DegradationDataModule
from rvar.lit.refiner import RefinerModule
from rvar.pixels import to_signed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("prior")
parser.add_argument("--dim", type=int, default=128)
parser.add_argument("--depth", type=int, default=4)
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--mlp", type=int, default=256)
parser.add_argument("--pixel", action="store_true", help="add the pixel loss through the frozen decoder")
args = parser.parse_args()
torch.set_num_threads(2)
module = RefinerModule(args.prior, args.dim, args.depth, args.heads, args.mlp, condition_on_degraded=True,
                       residual_from_degraded=True, whole_image_context=True)
tok = module.tokenizer
degradations = [{"name": n} for n in ("haze", "rain", "snow", "low_light", "motion_blur")] + [
    {"name": "gaussian_noise", "options": {"sigma": [10, 40]}}, {"name": "jpeg", "options": {"quality": [8, 40]}}]
data = DegradationDataModule(crop_size=64, context_size=256, batch_size=16, samples_per_epoch=200,
                             degradations=degradations)
data.setup("fit")
batches = iter(data.train_dataloader())
optimizer = torch.optim.AdamW(module.refiner.parameters(), lr=5e-4)
spent = {}


def timed(part, fn):
    start = time.perf_counter()
    result = fn()
    spent[part] = spent.get(part, 0.0) + time.perf_counter() - start
    return result


for step in range(6):
    batch = timed("batch (worker side)", lambda: next(batches))
    batch = timed("degradations (device side)", lambda: data.on_after_batch_transfer(batch, 0))
    with torch.no_grad():
        cond = timed("encodes", lambda: tok.encode_condition(to_signed(batch["degraded"])))
        sample = timed("prior sampling", lambda: module.prior.sample(cond, tok.quantize))
        target = timed("encodes", lambda: tok.encode_continuous(to_signed(batch["clean"])))
        context = timed("encodes", lambda: tok.condition_to_continuous(
            tok.encode_condition(to_signed(batch["context"]))).float())
        degraded = tok.condition_to_continuous(cond).float()
    f_hat = rearrange(sample.f_hat.float(), "b c h w -> b (h w) c")
    refined = timed("refiner forward", lambda: module.refiner(f_hat, sample.last_block.float(), degraded, context))
    loss = F.l1_loss(refined, rearrange(target.float(), "b c h w -> b (h w) c"))
    if args.pixel:
        side = sample.f_hat.shape[-1]
        image = timed("decoder forward (pixel loss)", lambda: tok.decode(
            rearrange(refined, "b (h w) c -> b c h w", h=side, w=side), clamp=False).float())
        loss = loss + F.l1_loss(image, to_signed(batch["clean"])) + F.mse_loss(image, to_signed(batch["clean"]))
    timed("backward", loss.backward)
    timed("optimizer", lambda: (optimizer.step(), optimizer.zero_grad()))
    if step == 0:
        spent.clear()
total = sum(spent.values())
for part, seconds in sorted(spent.items(), key=lambda item: -item[1]):
    print(f"{part:30s} {seconds / 5 * 1000:7.1f} ms  {seconds / total * 100:5.1f} %")
print(f"{'step':30s} {total / 5 * 1000:7.1f} ms")
