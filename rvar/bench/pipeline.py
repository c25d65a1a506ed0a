"""End-to-end restore cost (``rvar bench --pipeline``): tokenizer, prior, refiner and decoder together.

For each size (d16 at 256 and 512 px, and the tiny parity size) and precision (fp32, bf16 autocast), a fresh
process builds a restorer with random weights (speed does not depend on them), restores one image after one
untimed warm-up, and reports seconds per image, the tokenizer's encode+decode seconds on the same image, and
the process's peak resident memory (weights included). A fresh process per configuration keeps the memory
high-water marks apart.

``pipeline_flops_utilization`` = FLOPs of one restore (``FlopCounterMode``: matmuls, convolutions and attention;
elementwise work is not counted) / its seconds / the faster of the bf16 and fp32 ``torch.mm`` peaks measured in the
same process. That is the bf16 peak where the CPU has bf16 natively (the denominator for both precisions, so fp32
rows read as a fraction of what bf16 could reach); without it bf16 is emulated, far slower than fp32, and the fp32
peak is the ceiling (the bf16 one is then not measured: ``matmul_peak_bf16_flops`` None).
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable, Dict, List, Sequence

PRECISIONS = ("fp32", "bf16")


def measure(size: str, precision: str, repeats: int = 1) -> Dict[str, Any]:
    """Run in the current process: seconds per restored image and peak memory."""
    import torch

    import rvar.registry
    from rvar.bench.sampling import best_time, count_flops, matmul_peak, peak_rss_mib, size_spec
    from rvar.inference import autocast
    from rvar.nn import count_parameters
    from rvar.nn.restorer import Restorer
    from rvar.pixels import to_signed

    rvar.registry.load_plugins()
    torch.manual_seed(0)
    restorer = Restorer(*size_spec(size)).eval()
    side = restorer.image_size
    img = to_signed(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)))
    ctx = lambda: autocast(precision, torch.device("cpu"))  # noqa: E731

    def timed(fn: Callable[[], Any]) -> float:  # one untimed warm-up, then the best of ``repeats``
        def run() -> None:
            with ctx():
                fn()

        with torch.inference_mode():
            return best_time(run, repeats)

    restore_s = timed(lambda: restorer.restore(img))
    tokenizer_s = timed(lambda: restorer.tokenizer.reconstruct(img))
    peak_mib = peak_rss_mib()
    params = count_parameters(restorer)
    with torch.inference_mode(), ctx():
        flops = count_flops(lambda: restorer.restore(img))
    from rvar.inference import native_bf16

    # emulated bf16 is far slower than fp32 (timing its 2048^3 product took minutes on such a CPU): not measured
    peak_bf16 = matmul_peak(torch.bfloat16) if native_bf16() else None
    peak_fp32 = matmul_peak(torch.float32)
    peak = max(peak_bf16 or 0.0, peak_fp32)
    return {"size": size, "image_size": side, "precision": precision, "restore_seconds": restore_s,
            "tokenizer_encode_decode_seconds": tokenizer_s, "peak_memory_mib": peak_mib, "parameters": params,
            "threads": torch.get_num_threads(), "restore_flops": flops, "matmul_peak_bf16_flops": peak_bf16,
            "matmul_peak_fp32_flops": peak_fp32, "pipeline_flops_utilization": flops / restore_s / peak}


def run_pipeline_bench(sizes: Sequence[str], precisions: Sequence[str] = PRECISIONS, repeats: int = 1,
                       log: Callable[[str], None] = print) -> List[Dict[str, Any]]:
    results = []
    for size in sizes:
        for precision in precisions:
            log(f"[pipeline {size} {precision}] restoring one image in a fresh process ...")
            code = (f"import json; from rvar.bench.pipeline import measure; "
                    f"print(json.dumps(measure({size!r}, {precision!r}, {int(repeats)})))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline bench {size}/{precision} failed: {proc.stderr.strip()[-500:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def format_pipeline(results: List[Dict[str, Any]]) -> str:
    lines = ["| size | precision | parameters | restore s / image | tokenizer encode+decode s | peak memory MiB "
             "| GFLOP / restore | pipeline_flops_utilization |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} ({r['image_size']} px) | {r['precision']} | {r['parameters'] / 1e6:.1f} M | "
              f"{r['restore_seconds']:.3f} | {r['tokenizer_encode_decode_seconds']:.3f} | "
              f"{r['peak_memory_mib']:.0f} | {r['restore_flops'] / 1e9:.1f} | "
              f"{100 * r['pipeline_flops_utilization']:.1f} % |" for r in results]
    return "\n".join(lines)
