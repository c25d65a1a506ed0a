#!/bin/bash
# Retrain a demo's whole RestoreVAR chain (prior -> refiner -> decoder -> fidelity, each with the demo's own derived
# config) with other time budgets, into a new folder, to compare how a contender's seconds are best split:
#
#   benchmarks/gate_study/share_chain.sh DEMO_OUT NEW_OUT PRIOR_S REFINER_S [DECODER_S FIDELITY_S]
#
# DEMO_OUT is an `rvar demo --out` folder (its configs/, prior_pretrained.ckpt and tokenizer.ckpt are read, nothing
# there is written); NEW_OUT gets the four checkpoints and logs. PYTHON=.venv/bin/python picks the interpreter. Run
# it on an idle machine: the stages are wall-time budgeted. Then score NEW_OUT/restorevar.ckpt with
# collect_val.py and score_colour.py.
set -euo pipefail
D=$(cd "$1" && pwd); mkdir -p "$2"; O=$(cd "$2" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$O/configs"
declare -A SECONDS_OF=([prior]=$3 [refiner]=$4 [decoder]=${5:-keep} [fidelity]=${6:-keep})
for s in prior refiner decoder fidelity; do
  sed "s#$D/prior.ckpt#$O/prior.ckpt#; s#$D/restorer_refined.ckpt#$O/restorer_refined.ckpt#;
       s#$D/restorer_decoded.ckpt#$O/restorer_decoded.ckpt#; s#$D/restorevar.ckpt#$O/restorevar.ckpt#;
       s#$D/runs/#$O/runs/#" "$D/configs/$s.yaml" > "$O/configs/$s.yaml"
  if [ "${SECONDS_OF[$s]}" != keep ]; then
    t=${SECONDS_OF[$s]}
    sed -i "s#max_time: .*#max_time: 00:00:$(printf '%02d:%02d' $((t / 60)) $((t % 60)))#" "$O/configs/$s.yaml"
  fi
done
PY=${PYTHON:-python}
export PYTHONPATH=$ROOT NO_ALBUMENTATIONS_UPDATE=1 MLFLOW_TRACKING_URI=sqlite:///$O/mlflow.db
cd "$ROOT"
for s in prior refiner decoder fidelity; do
  "$PY" -m rvar fit --config "$O/configs/$s.yaml" > "$O/$s.log" 2>&1
done
grep -h "training ended\|image switch" "$O"/*.log | cut -c1-200
