#!/bin/bash
# Retrain a demo's RestoreVAR chain after its prior (refiner -> decoder -> fidelity, each with the demo's own derived
# config and time budget) with changed refiner arguments, into a new folder, for offline comparison of recipes:
#
#   benchmarks/gate_study/refiner_chain.sh DEMO_OUT NEW_OUT ["--model.init_args.blend_degraded true" ...]
#
# DEMO_OUT is an `rvar demo --out` folder (its configs/ and prior.ckpt are read, nothing there is written);
# NEW_OUT gets restorer_refined.ckpt, restorer_decoded.ckpt, restorevar.ckpt, runs/, the three logs and its own
# mlflow.db. PYTHON=.venv/bin/python picks the interpreter. Run it on an idle machine: the stages are wall-time
# budgeted. Then, e.g.,
#   python benchmarks/gate_study/collect_val.py NEW_OUT/restorevar.ckpt val.pt 18
set -euo pipefail
D=$(cd "$1" && pwd); mkdir -p "$2"; O=$(cd "$2" && pwd); OV=${3:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$O/configs"
for s in refiner decoder fidelity; do
  sed "s#$D/restorer_refined.ckpt#$O/restorer_refined.ckpt#; s#$D/restorer_decoded.ckpt#$O/restorer_decoded.ckpt#;
       s#$D/restorevar.ckpt#$O/restorevar.ckpt#; s#$D/runs/#$O/runs/#" "$D/configs/$s.yaml" > "$O/configs/$s.yaml"
done
PY=${PYTHON:-python}
export PYTHONPATH=$ROOT NO_ALBUMENTATIONS_UPDATE=1 MLFLOW_TRACKING_URI=sqlite:///$O/mlflow.db
cd "$ROOT"
# shellcheck disable=SC2086
"$PY" -m rvar fit --config "$O/configs/refiner.yaml" $OV > "$O/refiner.log" 2>&1
"$PY" -m rvar fit --config "$O/configs/decoder.yaml" > "$O/decoder.log" 2>&1
"$PY" -m rvar fit --config "$O/configs/fidelity.yaml" > "$O/fidelity.log" 2>&1
grep -h "validation at\|kept gate" "$O/refiner.log" "$O/decoder.log" "$O/fidelity.log" | cut -c1-200
