#!/usr/bin/env bash
# One-GPU measurements of the full-size method (issue #13.3); at most 8 minutes on one H100.
#
#   bash benchmarks/gpu.sh                 # -> benchmarks/gpu/gpu.json + benchmarks/gpu/summary.txt
#   bash benchmarks/gpu.sh --dry-run       # the same code paths on the CPU at the tiny size (no GPU needed)
#   OUT=/some/dir bash benchmarks/gpu.sh   # elsewhere
#
# What it measures (rvar/bench/gpu.py, torch.cuda.synchronize() around every timed call): the whole restorer per
# 512x512 image in bf16 at batch 1 and 8 with its FLOPs (paper: 0.201 s, 10 scales, 1.05 TFLOPs), the LDM baseline at
# 50 and 20 steps, the full-size prior's training step (images/s, achieved TFLOP/s, with and without activation
# checkpointing) and a 2-process DDP step when two GPUs are visible.
#
# Offline machines: nothing is downloaded. The script needs a Python where `import rvar` works. It tries, in order,
# $PYTHON, ./.venv/bin/python, python3; if rvar is missing there and a wheel folder exists ($WHEELS, default
# ./wheels, e.g. made beforehand with `pip download -d wheels -e .` or `pip wheel -w wheels .`), it installs from it
# with --no-index. Otherwise it stops with a message saying what to do.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/gpu}"
LIMIT_S="${LIMIT_S:-480}"     # 8 minutes
WHEELS="${WHEELS:-wheels}"

pick_python() {
  for candidate in "${PYTHON:-}" .venv/bin/python python3 python; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && { echo "$candidate"; return; }
  done
  echo ""
}
PY="$(pick_python)"
if [ -z "$PY" ]; then
  echo "benchmarks/gpu.sh: no Python found; set PYTHON=/path/to/python (3.10+ with torch)" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NO_ALBUMENTATIONS_UPDATE=1
if ! "$PY" -c 'import rvar, torch, lightning, diffusers' 2>/dev/null; then
  if [ -d "$WHEELS" ]; then
    echo "benchmarks/gpu.sh: rvar or a dependency is not importable with $PY; installing offline from $WHEELS/ ..." >&2
    "$PY" -m pip install --no-index --find-links "$WHEELS" -e . >&2
  fi
  if ! "$PY" -c 'import rvar, torch, lightning, diffusers' 2>/dev/null; then
    echo "benchmarks/gpu.sh: 'python -c \"import rvar\"' fails with $PY and no usable wheel folder ($WHEELS/)." >&2
    echo "  This machine has no internet: bring the environment with the repository, e.g. on a connected machine" >&2
    echo "  'pip wheel -w wheels .' (same Python version and platform), copy wheels/ here, then rerun;" >&2
    echo "  or point PYTHON at an interpreter that has torch (CUDA build), lightning, diffusers and rvar's deps." >&2
    exit 2
  fi
fi
"$PY" - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, GPUs: {torch.cuda.device_count()}",
      *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
PY
mkdir -p "$OUT"
echo "benchmarks/gpu.sh: running (limit ${LIMIT_S}s) ..." >&2
status=0
timeout --signal=TERM --kill-after=20 "$LIMIT_S" "$PY" -m rvar.bench.gpu --out "$OUT" "$@" || status=$?
if [ "$status" -eq 124 ]; then
  echo "benchmarks/gpu.sh: stopped at the ${LIMIT_S}s limit; $OUT/gpu.json holds the sections finished before it" >&2
fi
[ -f "$OUT/summary.txt" ] && cat "$OUT/summary.txt"
exit "$status"
