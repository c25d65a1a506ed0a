#!/bin/bash
# Refit a finished demo's fidelity stage (its own derived config and budget) with a seed and overrides, then score
# the gate on collect_val.py tensors of the same restorer:
#   DEMO=outputs/demo VAL=val.pt OUT=/tmp/fits benchmarks/gate_study/refit.sh TAG SEED [--model.init_args.gate.chroma true ...]
# (BENCHMARKS.md, twelfth round: 3 seeds each of the gate with and without chroma and switch_keep)
set -e
TAG=$1; SEED=$2; shift 2
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
sed -e "s#$DEMO/restorevar.ckpt#$OUT/$TAG.ckpt#" -e "s#runs/fidelity#runs/fidelity_$TAG#" \
    "$DEMO/configs/fidelity.yaml" > "$OUT/$TAG.yaml"
$PYTHON -m rvar fit --config "$OUT/$TAG.yaml" --seed_everything "$SEED" "$@" > "$OUT/$TAG.log" 2>&1
grep -h "image switch" "$OUT/$TAG.log" || true
$PYTHON benchmarks/gate_study/score_colour.py "$OUT/$TAG.ckpt" $VAL  # VAL: one or more tensor files
