"""GPU measurements of the full-size method, run by ``benchmarks/gpu.sh``; ``--dry-run`` runs the same
code paths on the CPU at the tiny size.

Measured with ``torch.cuda.synchronize()`` around every timed call (best of ``repeats`` after one warm-up):

* ``matmul_peak``: bf16 ``torch.mm`` of n x n x n, the device's practical peak in this run;
* ``restore``: the whole restorer (tokenizer encode, 10-scale KV-cached prior sampling, refiner, decoder) on
  512x512 images in bf16 (weights cast to bf16), seconds per image at batch 1 and 8, and the FLOPs of one
  restore (``FlopCounterMode``); the paper reports 0.201 s per image and 1.05 TFLOPs;
* ``ldm``: the parameter-matched latent-diffusion baseline's denoising loop at 50 (DDIM) and 20 (DPM-Solver++)
  steps on the same 32x32 latent, plus the tokenizer's encode and decode, per image;
* ``train``: one optimizer step of the full-size prior as ``PriorModule`` takes it (frozen tokenizer encodes the
  clean and degraded images; teacher-forced forward, cross-entropy, backward, AdamW) under bf16 autocast:
  images/s and achieved TFLOP/s (FLOPs of one step / its seconds);
* ``ddp``: the same step with 2 processes (``torchrun``, NCCL) when two GPUs exist: global images/s.

Random weights: speed does not depend on them. Writes ``OUT/gpu.json`` and ``OUT/summary.txt``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F

from rvar.bench.sampling import best_time, count_flops, matched_denoiser, matmul_peak, size_spec
from rvar.inference import autocast
from rvar.nn import count_parameters
from rvar.pixels import to_signed

PAPER = {"restore_seconds_per_image": 0.201, "restore_tflops": 1.05, "scales": 10}


# 1. sizes and inputs (timing: rvar.bench.sampling's helpers, synchronised on the device) ---------------------
def configs(tiny: bool):
    return size_spec("tiny" if tiny else "d16-512")


def random_images(batch: int, side: int, device: torch.device) -> torch.Tensor:
    return to_signed(torch.rand(batch, 3, side, side, device=device))


# 2. the measurements -----------------------------------------------------------------------------------------
def bench_restore(device: torch.device, tiny: bool, batches=(1, 8), repeats: int = 3) -> Dict[str, Any]:
    from rvar.nn.restorer import Restorer

    torch.manual_seed(0)
    restorer = Restorer(*configs(tiny)).eval().to(device)
    side = restorer.image_size
    out: Dict[str, Any] = {"image_size": side, "parameters": count_parameters(restorer),
                           "seconds_per_image": {}}
    for batch in batches:
        images = random_images(batch, side, device)

        def run():
            with torch.inference_mode(), autocast("bf16", device):
                return restorer.restore(images)

        out["seconds_per_image"][str(batch)] = best_time(run, repeats, device=device) / batch
    images = random_images(1, side, device)
    with torch.inference_mode(), autocast("bf16", device):
        out["flops_per_image"] = count_flops(lambda: restorer.restore(images))
    del restorer
    return out


def bench_ldm(device: torch.device, tiny: bool, steps=(50, 20), repeats: int = 2) -> Dict[str, Any]:
    from rvar.bench.sampling import ldm_baseline
    from rvar.nn.prior import RestoreVARPrior
    from rvar.nn.tokenizer import VQVAE

    ldm = ldm_baseline()  # the baseline through the registry, like rvar bench
    tok_cfg, prior_cfg, _ = configs(tiny)
    prior_params = count_parameters(RestoreVARPrior(prior_cfg))
    torch.manual_seed(0)
    denoiser = matched_denoiser(tok_cfg, prior_cfg, prior_params).to(device)
    tokenizer = VQVAE(tok_cfg).eval().to(device)
    image = random_images(1, tok_cfg.image_size, device)
    schedule = ldm.train_schedule()
    out: Dict[str, Any] = {"parameters": count_parameters(denoiser), "seconds_per_image": {}}
    for n in steps:
        def run(n=n):
            with torch.inference_mode(), autocast("bf16", device):
                cond = tokenizer.encode_continuous(image)
                sampler = ldm.make_sampler("ddim" if n >= 50 else "dpm_solver", schedule.config)
                latent = ldm.denoise(denoiser, sampler, cond, n, torch.Generator(device="cpu").manual_seed(0))
                return tokenizer.decode(latent.to(cond.dtype))

        out["seconds_per_image"][str(n)] = best_time(run, repeats, device=device)
    return out


def build_training(device: torch.device, tiny: bool, checkpointing: bool = False):
    """(prior, tokenizer, optimizer, step function) of the prior's training step."""
    from rvar.nn.checkpointing import enable_activation_checkpointing
    from rvar.nn.prior import RestoreVARPrior
    from rvar.nn.tokenizer import VQVAE

    tok_cfg, prior_cfg, _ = configs(tiny)
    torch.manual_seed(0)
    tokenizer = VQVAE(tok_cfg).eval().requires_grad_(False).to(device)
    prior = RestoreVARPrior(prior_cfg).train().to(device)
    if checkpointing:
        enable_activation_checkpointing(prior.blocks)
    optimizer = torch.optim.AdamW(prior.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05,
                                  fused=device.type == "cuda")
    return prior, tokenizer, optimizer, tok_cfg.image_size


def train_step(model, tokenizer, optimizer, clean, degraded, device) -> torch.Tensor:
    with torch.no_grad(), autocast("bf16", device):
        idx = tokenizer.img_to_indices(clean)
        x = tokenizer.quantize.teacher_forcing_input(idx)
        cond = tokenizer.encode_condition(degraded)
    with autocast("bf16", device):
        logits = model(x, cond)
        loss = F.cross_entropy(logits.flatten(0, 1), torch.cat(idx, 1).flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def bench_train(device: torch.device, tiny: bool, batch: int, repeats: int = 3,
                checkpointing: bool = False) -> Dict[str, Any]:
    prior, tokenizer, optimizer, side = build_training(device, tiny, checkpointing)
    clean = random_images(batch, side, device)
    degraded = (clean * 0.7).clamp(-1, 1)
    step = lambda: train_step(prior, tokenizer, optimizer, clean, degraded, device)  # noqa: E731
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = best_time(step, repeats, 2, device)
    flops = count_flops(step)
    out = {"batch": batch, "gradient_checkpointing": checkpointing, "seconds_per_step": seconds,
           "images_per_second": batch / seconds, "flops_per_step": flops, "achieved_tflops": flops / seconds / 1e12,
           "parameters": count_parameters(prior)}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return out


# 3. DDP ------------------------------------------------------------------------------------------------------
def ddp_worker(tiny: bool, batch: int, repeats: int) -> None:
    """One rank of the 2-process step (started by torchrun); rank 0 prints one JSON line."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    use_cuda = torch.cuda.is_available() and not tiny
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    prior, tokenizer, optimizer, side = build_training(device, tiny)
    model = DistributedDataParallel(prior, device_ids=[local] if use_cuda else None)
    clean = random_images(batch, side, device)
    degraded = (clean * 0.7).clamp(-1, 1)
    step = lambda: train_step(model, tokenizer, optimizer, clean, degraded, device)  # noqa: E731
    seconds = best_time(step, repeats, 2, device)
    times = torch.tensor([seconds], device=device)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)
    world = dist.get_world_size()
    if rank == 0:
        print(json.dumps({"world_size": world, "batch_per_process": batch, "seconds_per_step": float(times),
                          "images_per_second": world * batch / float(times)}))
    dist.destroy_process_group()


def bench_ddp(tiny: bool, batch: int, repeats: int, timeout: float) -> Dict[str, Any]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "rvar.bench.gpu", "--ddp-worker", "--train-batch", str(batch), "--repeats", str(repeats)]
    if tiny:
        command.append("--dry-run")
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-800:]}
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


# 4. the run --------------------------------------------------------------------------------------------------
def summary(report: Dict[str, Any]) -> str:
    lines = [f"rvar GPU benchmark ({'DRY RUN: CPU, tiny sizes, not GPU numbers' if report['dry_run'] else 'full size'})",
             f"device: {report['device']}; torch {report['torch']}",
             f"bf16 matmul peak: {report['matmul_peak_tflops']:.1f} TFLOP/s"]
    r = report.get("restore")
    if r:
        per = r["seconds_per_image"]
        lines.append(f"whole restorer at {r['image_size']}px, bf16: " + ", ".join(
            f"batch {b}: {s:.4f} s/image" for b, s in per.items()) +
            f"; {r['flops_per_image'] / 1e12:.3f} TFLOPs per image (paper: {PAPER['restore_seconds_per_image']} s, "
            f"{PAPER['restore_tflops']} TFLOPs)")
    if report.get("ldm"):
        lines.append("LDM baseline (incl. tokenizer encode+decode): " + ", ".join(
            f"{n} steps: {s:.4f} s/image" for n, s in report["ldm"]["seconds_per_image"].items()))
    for key in ("train", "train_checkpointing"):
        t = report.get(key)
        if t:
            mem = f", peak {t['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in t else ""
            lines.append(f"prior training step ({key}), batch {t['batch']}: {t['seconds_per_step']:.3f} s, "
                         f"{t['images_per_second']:.2f} images/s, {t['achieved_tflops']:.1f} TFLOP/s achieved{mem}")
    if report.get("ddp"):
        lines.append(f"2-process DDP: {json.dumps(report['ddp'])}")
    lines.append(f"total wall: {report['wall_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rvar.bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/gpu", help="output folder (gpu.json, summary.txt)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the same code paths, quickly")
    parser.add_argument("--train-batch", type=int, help="prior training batch per process (default 16; 2 dry)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    tiny = args.dry_run
    batch = args.train_batch or (2 if tiny else 16)
    if args.ddp_worker:
        ddp_worker(tiny, batch, args.repeats)
        return 0
    if not tiny and not torch.cuda.is_available():
        print("rvar.bench.gpu: no CUDA device visible (use --dry-run for the CPU check)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if tiny else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    start = time.perf_counter()
    log = lambda m: print(f"[{time.perf_counter() - start:6.1f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    report: Dict[str, Any] = {"dry_run": tiny, "torch": torch.__version__, "python": platform.python_version(),
                              "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
                              "gpus": torch.cuda.device_count(), "paper": PAPER}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every section, so a run stopped at the time limit keeps what it measured
        report["wall_seconds"] = time.perf_counter() - start
        (out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")

    log("bf16 matmul peak ...")
    report["matmul_peak_tflops"] = matmul_peak(torch.bfloat16, 1024 if tiny else 8192, 5, device) / 1e12
    log("whole restorer, bf16, batch 1 and 8 ...")
    report["restore"] = bench_restore(device, tiny, batches=(1, 2) if tiny else (1, 8), repeats=args.repeats)
    report["restore"]["flops_utilization"] = (report["restore"]["flops_per_image"]
                                              / report["restore"]["seconds_per_image"]["1"]
                                              / (report["matmul_peak_tflops"] * 1e12))
    save()
    log("LDM baseline at 50 and 20 steps ...")
    report["ldm"] = bench_ldm(device, tiny, repeats=max(1, args.repeats - 1))
    save()
    log(f"prior training step, batch {batch} ...")
    report["train"] = bench_train(device, tiny, batch, args.repeats)
    report["train_checkpointing"] = bench_train(device, tiny, batch, args.repeats, checkpointing=True)
    save()
    if tiny or torch.cuda.device_count() >= 2:
        log("2-process DDP ...")
        report["ddp"] = bench_ddp(tiny, batch, args.repeats, timeout=300)
    else:
        report["ddp"] = {"skipped": f"{torch.cuda.device_count()} GPU(s) visible; DDP needs 2"}
    save()
    text = summary(report)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
