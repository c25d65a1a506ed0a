"""Speed side by side, in one process: RestoreVAR's greedy next-scale sampling vs the latent-diffusion baseline.

For each size (``tiny``: 64 px, 4x4x32 latent; ``d16-256``: 16x16; ``d16-512``: 32x32) the same random condition
latent goes to the prior and to a DiT denoiser with about the prior's parameter count (random weights: speed
does not depend on them). Measured, best of ``repeats`` wall times under ``torch.inference_mode()``:

* ``var``: ``prior.sample`` with the KV cache (fp32), ``var_no_cache``: without it, ``var_bf16``: with the cache
  under ``torch.autocast("cpu", bfloat16)``, ``forward``: one teacher-forced forward over all L tokens;
* ``ldm_50`` (DDIM) and ``ldm_20`` (DPM-Solver++): the denoising loop at 50 and 20 steps.

It also times a large ``torch.mm`` in fp32 and bf16 (the machine's matmul peak, measured in the same run) and
counts the FLOPs of one ``prior.sample`` with :class:`torch.utils.flop_counter.FlopCounterMode`, giving the
prior's achieved FLOP/s as a fraction of that peak. Tokenizer encoding and decoding are shared by both methods
and are not timed.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import platform
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from rvar.inference import autocast, native_bf16

SIZES = ("tiny", "d16-256", "d16-512")
QUICK_SIZES = ("tiny", "d16-256")


def size_spec(name: str):
    """(tokenizer, prior, refiner) configs of a bench size (the refiner of d16-512 is RestoreVAR's released one)."""
    from rvar.nn.prior import PriorConfig
    from rvar.nn.refiner import RefinerConfig
    from rvar.nn.tokenizer import TokenizerConfig

    presets = {"tiny": (TokenizerConfig.tiny, PriorConfig.tiny), "d16-256": (TokenizerConfig.vq_f16_256,
               PriorConfig.d16_256), "d16-512": (TokenizerConfig.vq_f16_512, PriorConfig.d16_512)}
    if name not in presets:
        raise ValueError(f"unknown bench size {name!r}; known: {', '.join(SIZES)}")
    tokenizer, prior = (make() for make in presets[name])
    return tokenizer, prior, RefinerConfig.tiny() if name == "tiny" else RefinerConfig.for_prior(prior)


# ---- 1. timing helpers (also rvar.bench.pipeline's and rvar.bench.gpu's) -----------------------------------
def best_time(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: Optional[torch.device] = None) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` untimed ones; on a CUDA ``device`` each call is
    timed to ``torch.cuda.synchronize``."""
    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 3,
                device: torch.device = torch.device("cpu")) -> float:
    """Achieved FLOP/s of an n x n x n ``torch.mm`` in ``dtype``: the machine's practical matmul peak."""
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, generator=g, device=device).to(dtype) for _ in range(2))
    with torch.inference_mode():
        return 2 * n ** 3 / best_time(lambda: torch.mm(a, b), repeats, device=device)


def peak_rss_mib() -> float:
    """The process's peak resident memory in MiB (Linux reports kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def ldm_baseline():
    """The module of the registered ``ldm`` baseline (its denoiser, noise schedule and samplers)."""
    from rvar.registry import BASELINES

    return importlib.import_module(BASELINES.get("ldm").__module__)


def matched_denoiser(tok_cfg, prior_cfg, prior_parameters: int) -> torch.nn.Module:
    """The ``ldm`` baseline's DiT with about ``prior_parameters`` parameters in ``tok_cfg``'s latent, in eval mode."""
    ldm = ldm_baseline()
    denoiser = ldm.LatentDiT(ldm.DenoiserConfig.match_parameters(
        prior_parameters, width=prior_cfg.embed_dim, num_heads=prior_cfg.num_heads, z_channels=tok_cfg.z_channels))
    for p in denoiser.parameters():  # DiT's zero init would make the blocks no-ops; speed needs real numbers
        if p.ndim > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.02)
    return denoiser.eval()


# ---- 2. one size --------------------------------------------------------------------------------------------
def bench_size(name: str, repeats: int = 3, with_no_cache: bool = True, peak_fp32: Optional[float] = None,
               warmup: int = 1, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Time RestoreVAR sampling (batch 1) and the matched LDM at one size; returns seconds, ratios and counts.

    The first measurement (KV-cached fp32 sampling) always gets one untimed warm-up call; ``warmup`` is the
    number of warm-up calls of the others (0 in ``--quick`` runs at d16, where one call takes seconds).
    """
    from rvar.nn import count_parameters
    from rvar.nn.prior import RestoreVARPrior
    from rvar.nn.tokenizer.quantizer import MultiScaleQuantizer

    diffusion = ldm_baseline()

    tok_cfg, prior_cfg, _ = size_spec(name)
    torch.manual_seed(0)
    log(f"[{name}] building the prior and the matched LDM denoiser ...")
    prior = RestoreVARPrior(prior_cfg).eval()
    quantizer = MultiScaleQuantizer(tok_cfg.vocab_size, tok_cfg.z_channels, tok_cfg.patch_nums, tok_cfg.beta,
                                    tok_cfg.quant_resi, tok_cfg.share_quant_resi).eval()
    prior_params = count_parameters(prior)
    denoiser = matched_denoiser(tok_cfg, prior_cfg, prior_params)
    ldm_params = count_parameters(denoiser)
    side = tok_cfg.patch_nums[-1]
    g = torch.Generator().manual_seed(0)
    cond_BChw = torch.randn(1, tok_cfg.z_channels, side, side, generator=g)
    cond_BSCv = cond_BChw.flatten(2).transpose(1, 2).contiguous()
    x_teacher = torch.randn(1, prior_cfg.num_tokens - prior.first_l, tok_cfg.z_channels, generator=g)
    schedule = diffusion.train_schedule()

    def var(use_cache: bool = True):
        return prior.sample(cond_BSCv, quantizer, use_cache=use_cache)

    def var_bf16():
        with autocast("bf16", torch.device("cpu")):
            return prior.sample(cond_BSCv, quantizer)

    def ldm(steps: int):
        sampler = diffusion.make_sampler("ddim" if steps >= 50 else "dpm_solver", schedule.config)
        return diffusion.denoise(denoiser, sampler, cond_BChw, steps, torch.Generator().manual_seed(0))

    out: Dict[str, Any] = {"size": name, "image_size": tok_cfg.image_size, "latent": [tok_cfg.z_channels, side, side],
                           "tokens": prior_cfg.num_tokens, "batch": 1, "prior_parameters": prior_params,
                           "ldm_parameters": ldm_params, "ldm_depth": denoiser.config.depth,
                           "parameter_ratio": ldm_params / prior_params, "seconds": {}}
    seconds = out["seconds"]
    with torch.inference_mode():
        log(f"[{name}] RestoreVAR sampling, KV cache, fp32 ...")
        seconds["var"] = best_time(var, repeats)
        seconds["forward"] = best_time(lambda: prior(x_teacher, cond_BSCv), repeats, warmup=1)
        if with_no_cache:
            log(f"[{name}] RestoreVAR sampling without KV cache ...")
            seconds["var_no_cache"] = best_time(lambda: var(False), repeats, warmup)
        log(f"[{name}] RestoreVAR sampling, bf16 autocast ...")
        seconds["var_bf16"] = best_time(var_bf16, repeats, warmup)
        for steps in (50, 20):
            log(f"[{name}] LDM, {steps} steps ...")
            seconds[f"ldm_{steps}"] = best_time(lambda: ldm(steps), repeats if name == "tiny" else 1,
                                                warmup=warmup if name == "tiny" else 0)
        out["var_flops"] = count_flops(var)
    t = seconds
    out["speedup_vs_ldm"] = t["ldm_50"] / t["var"]
    out["speedup_vs_ldm_20"] = t["ldm_20"] / t["var"]
    out["kv_cache_speedup"] = t["var_no_cache"] / t["var"] if "var_no_cache" in t else None
    out["bf16_speedup"] = t["var"] / t["var_bf16"]
    out["sampling_vs_forward"] = t["var"] / t["forward"]
    out["var_flops_per_second"] = out["var_flops"] / t["var"]
    out["flops_utilization"] = out["var_flops_per_second"] / peak_fp32 if peak_fp32 else None
    del prior, denoiser
    return out


# ---- 3. the whole run ---------------------------------------------------------------------------------------
def machine() -> Dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "bf16_supported": native_bf16()}


def run_bench(sizes: Sequence[str] = QUICK_SIZES, quick: bool = True, repeats: Optional[int] = None,
              log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the comparison at ``sizes``; the headline ratios come from the largest size measured."""
    for name in sizes:
        size_spec(name)  # an unknown size raises ValueError before any timing
    log("timing the matmul peak (fp32, bf16) ...")
    peak_fp32 = matmul_peak(torch.float32)
    peak_bf16 = matmul_peak(torch.bfloat16) if native_bf16() else None
    results: List[Dict[str, Any]] = []
    for name in sizes:
        big = name != "tiny"
        reps = repeats if repeats is not None else (1 if big and quick else 3)
        no_cache = not (quick and name == "d16-512")
        results.append(bench_size(name, reps, with_no_cache=no_cache, peak_fp32=peak_fp32,
                                  warmup=0 if big and quick else 1, log=log))
    head = results[-1]
    return {"command": None, "quick": quick, "machine": machine(),
            "matmul_peak_flops": {"fp32": peak_fp32, "bf16": peak_bf16},
            "headline_size": head["size"],
            "speedup_vs_ldm": head["speedup_vs_ldm"], "speedup_vs_ldm_20": head["speedup_vs_ldm_20"],
            "kv_cache_speedup": head["kv_cache_speedup"], "bf16_speedup": head["bf16_speedup"],
            "flops_utilization": head["flops_utilization"], "sampling_vs_forward": head["sampling_vs_forward"],
            "sizes": results}


def _fmt(value: Optional[float], digits: int = 2, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def format_table(report: Dict[str, Any]) -> str:
    """A Markdown table of a :func:`run_bench` report."""
    head = ("| size | L | params prior / LDM | RestoreVAR s | no cache s | bf16 s | TF forward s | LDM 50 s | "
            "LDM 20 s | vs LDM-50 | vs LDM-20 | KV cache | bf16 | sample/forward | GFLOP/s | of peak |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in report["sizes"]:
        s = r["seconds"]
        lines.append(
            f"| {r['size']} ({r['image_size']} px, {r['latent'][1]}x{r['latent'][2]}) | {r['tokens']} | "
            f"{r['prior_parameters'] / 1e6:.2f} M / {r['ldm_parameters'] / 1e6:.2f} M | {_fmt(s.get('var'), 3)} | "
            f"{_fmt(s.get('var_no_cache'), 3)} | {_fmt(s.get('var_bf16'), 3)} | {_fmt(s.get('forward'), 3)} | "
            f"{_fmt(s.get('ldm_50'), 2)} | {_fmt(s.get('ldm_20'), 2)} | {_fmt(r['speedup_vs_ldm'], 1, 'x')} | "
            f"{_fmt(r['speedup_vs_ldm_20'], 1, 'x')} | {_fmt(r['kv_cache_speedup'], 2, 'x')} | "
            f"{_fmt(r['bf16_speedup'], 2, 'x')} | {_fmt(r['sampling_vs_forward'], 2, 'x')} | "
            f"{r['var_flops_per_second'] / 1e9:.1f} | {_fmt(r['flops_utilization'] and 100 * r['flops_utilization'], 1, ' %')} |")
    peak = report["matmul_peak_flops"]
    lines.append("")
    lines.append(f"matmul peak (2048^3 torch.mm): fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 "
                 f"{_fmt(peak['bf16'] and peak['bf16'] / 1e9, 1)} GFLOP/s; headline size {report['headline_size']}: "
                 f"speedup_vs_ldm {_fmt(report['speedup_vs_ldm'], 1)}x, kv_cache_speedup "
                 f"{_fmt(report['kv_cache_speedup'], 2)}x, bf16_speedup {_fmt(report['bf16_speedup'], 2)}x, "
                 f"flops_utilization {_fmt(report['flops_utilization'], 3)}, sampling_vs_forward "
                 f"{_fmt(report['sampling_vs_forward'], 2)}x")
    return "\n".join(lines)
