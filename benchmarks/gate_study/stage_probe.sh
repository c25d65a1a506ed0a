#!/bin/bash
# Run one stage of a finished demo again, from its own derived config, into a new folder, with changes given as
# `rvar fit` arguments; print the stage's last validation line (its 32 seeded validation crops, the same for every
# run of that stage, so runs compare with each other and with the demo's own log):
#
#   benchmarks/gate_study/stage_probe.sh DEMO_OUT NEW_OUT STAGE [rvar fit arguments ...]
#
#   stage_probe.sh /tmp/d4/outputs/demo /tmp/p/scratch prior --model.init_args.init_from null \
#       --model.init_args.prior '{depth: 2, embed_dim: 128, num_heads: 2, condition_gain_init: 1.0, aligned_condition: true}'
#   stage_probe.sh /tmp/d4/outputs/demo /tmp/p/r_scratch refiner --model.init_args.prior_ckpt /tmp/p/scratch/prior.ckpt
#   stage_probe.sh /tmp/d4/outputs/demo /tmp/p/joint refiner --model.init_args.train_prior true
#   stage_probe.sh /tmp/d4/outputs/demo /tmp/p/n_base noprior
#
# STAGE is a file under DEMO_OUT/configs (prior, refiner, noprior, ...); the checkpoint it exports and its run folder
# move to NEW_OUT, what it reads stays in DEMO_OUT unless an argument says otherwise. PYTHON=.venv/bin/python picks
# the interpreter. The stages are wall-time budgeted (`--trainer.max_time 00:00:01:14` changes it): run on an idle
# machine.
set -euo pipefail
D=$(cd "$1" && pwd); mkdir -p "$2"; O=$(cd "$2" && pwd); S=$3; shift 3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CFG="$D/configs/$S.yaml"
[ -f "$CFG" ] || { echo "stage_probe.sh: no $CFG (stages: $(ls "$D/configs" | sed 's/.yaml//' | tr '\n' ' '))" >&2; exit 2; }
EXPORT=$(grep -A2 "rvar.lit.export.ExportCheckpoint" "$CFG" | sed -n 's/^ *path: //p')
sed "s#$EXPORT#$O/$(basename "$EXPORT")#; s#$D/runs/#$O/runs/#" "$CFG" > "$O/$S.yaml"
export PYTHONPATH=$ROOT NO_ALBUMENTATIONS_UPDATE=1 MLFLOW_TRACKING_URI=sqlite:///$O/mlflow.db
cd /
"${PYTHON:-python}" -m rvar fit --config "$O/$S.yaml" "$@" > "$O/$S.log" 2>&1
grep -h "training ended" "$O/$S.log"
grep -h "validation at" "$O/$S.log" | tail -1 | cut -c1-300
