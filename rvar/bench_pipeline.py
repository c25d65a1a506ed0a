"""End-to-end restore cost (``rvar bench --pipeline``): tokenizer, prior, refiner and decoder together.

For each size (d16 at 256 and 512 px, and the tiny parity size) and precision (fp32, bf16 autocast), a fresh
process builds a restorer with random weights (speed does not depend on them), restores one image after one
untimed warm-up, and reports seconds per image, the tokenizer's encode+decode seconds on the same image, and
the process's peak resident memory (weights included). A fresh process per configuration keeps the memory
high-water marks apart.

``pipeline_flops_utilization`` = FLOPs of one restore (``FlopCounterMode``: matmuls, convolutions and attention;
elementwise work is not counted) / its seconds / the bf16 ``torch.mm`` peak measured in the same process. The bf16
peak is the denominator for both precisions, so fp32 rows read as a fraction of what bf16 could reach.
"""
from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

PIPELINE_SIZES = ("tiny", "d16-256", "d16-512")
PRECISIONS = ("fp32", "bf16")


def build(size: str):
    import torch

    from rvar.bench import size_spec
    from rvar.nn.refiner import RefinerConfig
    from rvar.nn.restorer import Restorer

    tok, prior = size_spec(size)
    ref = RefinerConfig.tiny() if size == "tiny" else RefinerConfig.for_prior(prior)  # d16-512: RestoreVAR's
    torch.manual_seed(0)
    return Restorer(tok, prior, ref).eval()


def measure(size: str, precision: str, repeats: int = 1) -> Dict[str, Any]:
    """Run in the current process: seconds per restored image and peak memory."""
    import torch

    import rvar.registry
    from rvar.nn import count_parameters
    from rvar.pixels import to_signed

    rvar.registry.load_plugins()
    restorer = build(size)
    side = restorer.image_size
    img = to_signed(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

    def timed(fn: Callable[[], Any]) -> float:
        best = float("inf")
        with torch.inference_mode():
            with ctx():
                fn()  # untimed warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                with ctx():
                    fn()
                best = min(best, time.perf_counter() - start)
        return best

    restore_s = timed(lambda: restorer.restore(img))
    tokenizer_s = timed(lambda: restorer.tokenizer.reconstruct(img))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    params = count_parameters(restorer)
    from rvar.bench import count_flops, matmul_peak

    with torch.inference_mode(), ctx():
        flops = count_flops(lambda: restorer.restore(img))
    peak_bf16 = matmul_peak(torch.bfloat16)
    return {"size": size, "image_size": side, "precision": precision, "restore_seconds": restore_s,
            "tokenizer_encode_decode_seconds": tokenizer_s, "peak_memory_mib": peak_mib, "parameters": params,
            "threads": torch.get_num_threads(), "restore_flops": flops, "matmul_peak_bf16_flops": peak_bf16,
            "pipeline_flops_utilization": flops / restore_s / peak_bf16}


def run_pipeline_bench(sizes: Sequence[str], precisions: Sequence[str] = PRECISIONS, repeats: int = 1,
                       log: Callable[[str], None] = print) -> List[Dict[str, Any]]:
    results = []
    for size in sizes:
        for precision in precisions:
            log(f"[pipeline {size} {precision}] restoring one image in a fresh process ...")
            code = (f"import json; from rvar.bench_pipeline import measure; "
                    f"print(json.dumps(measure({size!r}, {precision!r}, {int(repeats)})))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline bench {size}/{precision} failed: {proc.stderr.strip()[-500:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def format_pipeline(results: List[Dict[str, Any]]) -> str:
    lines = ["| size | precision | parameters | restore s / image | tokenizer encode+decode s | peak memory MiB "
             "| GFLOP / restore | pipeline_flops_utilization |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['size']} ({r['image_size']} px) | {r['precision']} | {r['parameters'] / 1e6:.1f} M | "
                     f"{r['restore_seconds']:.3f} | {r['tokenizer_encode_decode_seconds']:.3f} | "
                     f"{r['peak_memory_mib']:.0f} | {r['restore_flops'] / 1e9:.1f} | "
                     f"{100 * r['pipeline_flops_utilization']:.1f} % |")
    return "\n".join(lines)
