"""`rvar bench --pipeline` measurement at the tiny size (plumbing; speed numbers live in BENCHMARKS.md)."""
from __future__ import annotations

from rvar.bench.pipeline import format_pipeline, measure


def test_tiny_pipeline_measurement_has_every_field():
    result = measure("tiny", "fp32")
    assert result["image_size"] == 64 and result["parameters"] > 1_000_000
    assert result["restore_seconds"] > 0 and result["tokenizer_encode_decode_seconds"] > 0
    assert result["peak_memory_mib"] > 0
    from rvar.inference import native_bf16

    assert result["restore_flops"] > 0 and result["matmul_peak_fp32_flops"] > 0
    assert (result["matmul_peak_bf16_flops"] > 0) if native_bf16() else result["matmul_peak_bf16_flops"] is None
    # of the faster matmul peak measured in the same process (bf16 where the CPU has it natively, else fp32)
    assert 0 < result["pipeline_flops_utilization"] < 1.5
    table = format_pipeline([result])
    assert "tiny (64 px)" in table and "fp32" in table
