"""Score restorer, prior or baseline checkpoints per degradation, as `rvar compare` does, on a chosen split.

    python benchmarks/score.py OUT/restorevar.ckpt [MORE.ckpt ...] [--data embedded-val] [--max-images 6]
    python benchmarks/score.py OUT/restorevar.ckpt --data /path/to/pairs        # paired folder: input/ + target/
    python benchmarks/score.py OUT/restorevar.ckpt --real-pairs ../shared/data/real_pairs   # clean/ + degraded/

Recipes are chosen on ``embedded-val`` (natural photos); ``embedded-test`` is for reports. 256 px centre crops
under the demo's seven degradations (clean-folder data), 64 px tiles overlapping by half, whole-image context for
models that read it. Prints, per checkpoint, the mean PSNR, the gain over the degraded inputs, the PSNR gain and
the CIEDE2000 colour error (input -> output) per degradation.
"""
import argparse

import torch

from rvar.commands.compare import degradation_specs
from rvar.eval.compare import load_samples
from rvar.demo.runner import EVAL_DEGRADATIONS
from rvar.inference import apply_any_size, load_restoration_model
from rvar.eval.metrics import ciede2000_per_image, mean, psnr_per_image
from rvar.nn.prior.sampling import DECODINGS

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("checkpoints", nargs="+")
parser.add_argument("--data", default="embedded-val")
parser.add_argument("--max-images", type=int, default=None)
parser.add_argument("--size", type=int, default=256, help="centre-crop side (0 with --real-pairs: whole images)")
parser.add_argument("--degradations", default=EVAL_DEGRADATIONS)
parser.add_argument("--fidelity", type=float, nargs="+", default=[0.0], help="RestoreVAR fidelity weights to try")
parser.add_argument("--decoding", choices=DECODINGS, help="the prior's decoding (default: the "
                    "checkpoint's own)")
parser.add_argument("--swap", action="store_true", help="also score each RestoreVAR checkpoint with another "
                    "photo's prior outputs (the quality ladder's last rung): what the refiner takes from the prior")
parser.add_argument("--real-pairs", help="a folder of clean/NAME.png and degraded/NAME__TYPE.png (research data: "
                                        "measured here, never shipped); 256 px centre crops, grouped by TYPE")
parser.add_argument("--per-image", action="store_true", help="also print each image's input and output PSNR and "
                    "CIEDE2000")
args = parser.parse_args()


def real_pairs(folder: str):
    from pathlib import Path

    from rvar.eval.compare import Sample, centre_crop
    from rvar.io import read_image

    out = []
    for path in sorted(Path(folder, "degraded").glob("*__*.png")):
        name, kind = path.stem.rsplit("__", 1)
        clean = Path(folder, "clean", f"{name}.png")
        both = torch.cat([read_image(path).rgb, read_image(clean).rgb])
        both = centre_crop(both, args.size, path) if args.size else both  # --size 0: the whole image
        out.append(Sample(name, kind, both[:3], both[3:]))
    if not args.max_images:
        return out
    kinds = dict.fromkeys(x.degradation for x in out)
    return [s for kind in kinds for s in [x for x in out if x.degradation == kind][: args.max_images]]


samples = (real_pairs(args.real_pairs) if args.real_pairs else
           load_samples(args.data, degradation_specs(args.degradations), args.size, 0, args.max_images))
inputs = [float(psnr_per_image(s.degraded[None], s.clean[None])[0]) for s in samples]
colour_in = [float(ciede2000_per_image(s.degraded[None], s.clean[None])[0]) for s in samples]
runs = [(p, f, False) for p in args.checkpoints for f in args.fidelity]
runs += [(p, 0.0, True) for p in args.checkpoints] if args.swap else []
for path, fidelity, swap in runs:
    model = load_restoration_model(path, torch.device("cpu"), "fp32", fidelity=fidelity, decoding=args.decoding)
    gains, colours = {}, {}
    for number, sample in enumerate(samples):
        torch.manual_seed(number)
        fn = model.fn
        if swap:
            from rvar.eval.ladder import other_photo_fn

            others = [s for s in samples if s.name != sample.name] or [sample]
            fn = other_photo_fn(model.module, others[number % len(others)].degraded)
        with torch.inference_mode():
            out = apply_any_size(fn, sample.degraded, model.native, "tile", 16).clamp(0, 1)  # as rvar restore
        psnr = float(psnr_per_image(out[None], sample.clean[None])[0])
        colour = float(ciede2000_per_image(out[None], sample.clean[None])[0])
        gains.setdefault(sample.degradation.split(":")[0], []).append(psnr - inputs[number])
        colours.setdefault(sample.degradation.split(":")[0], []).append((colour_in[number], colour))
        if args.per_image:
            print(f"  {sample.name} {sample.degradation}: PSNR {inputs[number]:.2f} -> {psnr:.2f} dB, CIEDE2000 "
                  f"{colour_in[number]:.2f} -> {colour:.2f}", flush=True)
    every = [g for values in gains.values() for g in values]
    per = {name: round(mean(values), 2) for name, values in gains.items()}
    dE = {name: f"{mean(a for a, _ in v):.1f}->{mean(b for _, b in v):.1f}" for name, v in colours.items()}
    print(f"{path} ({args.decoding + ', ' if args.decoding else ''}fidelity {fidelity:g}{', another photo prior' if swap else ''}): inputs {mean(inputs):.2f} dB, gain {mean(every):+.2f} dB, per degradation {per}, "
          f"CIEDE2000 {dE}", flush=True)
