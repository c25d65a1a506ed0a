"""``rvar bench`` logic at the tiny size only (the d16 sizes are benchmarks, not tests)."""
from __future__ import annotations

import json

from rvar.cli import main

KEYS = ("speedup_vs_ldm", "kv_cache_speedup", "bf16_speedup", "flops_utilization", "sampling_vs_forward")


def test_bench_tiny_writes_json_with_the_keys(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = main(["bench", "--sizes", "tiny", "--repeats", "1", "--json", str(path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(path.read_text())
    for key in KEYS:
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["flops_utilization"] < 1.5  # a fraction of the matmul peak measured in the same run
    tiny = report["sizes"][0]
    assert tiny["size"] == "tiny" and tiny["latent"] == [32, 4, 4] and tiny["tokens"] == 30
    assert abs(tiny["parameter_ratio"] - 1) < 0.1  # LDM denoiser matched to the prior's parameter count
    assert set(tiny["seconds"]) >= {"var", "var_no_cache", "var_bf16", "forward", "ldm_50", "ldm_20"}
    assert "| tiny (64 px, 4x4) |" in captured.out


def test_bench_unknown_size_is_a_user_error(capsys):
    assert main(["bench", "--sizes", "huge"]) == 2
    assert capsys.readouterr().err.startswith("rvar: error: --sizes")
