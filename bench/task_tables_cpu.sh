#!/usr/bin/env bash
# The reduced CPU version of bench/task_tables_gpu.sh, one stage after another (this 2-core
# machine has no GPU): the CIFAR-10 classifiers (plain, and feature consistency with the quality
# block) for EPOCHS epochs, then for each the task tables (family, per-image network, per-image
# network with trellis weights, family of one table for all components; seeds 0, 1, 2; STEPS
# steps of BATCH images), then the alternating runs (two tables and one; seed 0). Only
# CIFAR-10's train/ is read. Then evaluates on LIMIT test images.
#
#   bash bench/task_tables_cpu.sh [RUNS] [EPOCHS] [STEPS] [BATCH] [LIMIT]
#
# Defaults: bench/out/task_tables_cpu 3 800 32 2000. Already trained classifiers and table runs
# (their export in RUNS) are kept, so a stopped run resumes stage by stage. METHODS="plain"
# trains only the plain classifier's rows (no consistency classifier, no alternating run).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=$(realpath -m "${1:-$REPO/bench/out/task_tables_cpu}")
EPOCHS=${2:-3}; STEPS=${3:-800}; BATCH=${4:-32}; LIMIT=${5:-2000}
DATA="$REPO/../shared/data/cifar10"
WORK="$RUNS/scratch"
B="python $REPO/bench/task_tables.py"
T0=$SECONDS
stamp() { echo "=== $((SECONDS - T0)) s: $*"; }
mkdir -p "$RUNS"

for method in ${METHODS:-plain consistency}; do
  if [ ! -f "$RUNS/classifiers/$method.npz" ]; then
    stamp "classifier $method, $EPOCHS epochs"
    $B train-classifier --method "$method" --data "$DATA" --runs "$RUNS" --work "$WORK" \
      --epochs "$EPOCHS" --batch-size 128 > "$RUNS/classifier-$method.log" 2>&1 ||
      { tail -n 20 "$RUNS/classifier-$method.log"; exit 1; }
    tail -n 1 "$RUNS/classifier-$method.log"
  fi
  for kind in family net block onetable; do
    if [ ! -f "$RUNS/tables/$method/$kind-s2/summary.json" ]; then
      stamp "tables $method $kind"
      rm -rf "$WORK/tables/$method/$kind-s"*
      if [ "$kind" = onetable ]; then args=(--kind family --one-table); else args=(--kind "$kind"); fi
      $B train-tables --classifier "$method" "${args[@]}" --seeds 0,1,2 --data "$DATA" \
        --runs "$RUNS" --work "$WORK" --steps "$STEPS" --batch "$BATCH" \
        --eval-every 50 > "$RUNS/tables-$method-$kind.log" 2>&1 ||
        { tail -n 20 "$RUNS/tables-$method-$kind.log"; exit 1; }
      tail -n 2 "$RUNS/tables-$method-$kind.log"
    fi
  done
done
for one in "" -onetable; do
  if [[ " ${METHODS:-consistency} " == *" consistency "* ]] &&
     [ ! -f "$RUNS/tables/alternate$one-s0/summary.json" ]; then
    stamp "alternate$one (consistency classifier and family, 3 rounds)"
    rm -rf "$WORK/tables/alternate$one-s0"
    $B train-tables --classifier consistency --kind alternate --seeds 0 --data "$DATA" \
      --runs "$RUNS" --work "$WORK" --steps "$STEPS" --batch "$BATCH" --eval-every 50 \
      --rounds 3 ${one:+--one-table} > "$RUNS/tables-alternate$one.log" 2>&1 ||
      { tail -n 20 "$RUNS/tables-alternate$one.log"; exit 1; }
    tail -n 2 "$RUNS/tables-alternate$one.log"
  fi
done
stamp "training done; evaluating on $LIMIT test images"
$B evaluate --runs "$RUNS" --limit "$LIMIT" --out "$RUNS/eval"
stamp "done"
