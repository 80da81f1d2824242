#!/usr/bin/env bash
# Trains everything bench/task_tables.py evaluates, in one run on a GPU machine (about 5 minutes
# of wall time on one H200): the CIFAR-10 classifiers (plain, and feature consistency with the
# quality block, `djpeg-train consistency`, 8 epochs) and the task tables for each (`djpeg-train
# task-tables` family, per-image network, per-image network with trellis weights, family of one
# table for all components; seeds 0, 1, 2), and the alternating runs (classifier and family in 3
# rounds, two tables and one, seed 0). Only CIFAR-10's train/ is
# read. The exports (classifiers as .npz, family files, networks, summaries) come back packed in
# one tar, with one log:
#
#   bash bench/task_tables_gpu.sh TRAIN_NPZ OUT [full|tiny]
#
#   TRAIN_NPZ  CIFAR-10's train/ as one .npz, made here by
#              python bench/task_tables.py pack-data --data ../shared/data/cifar10 \
#                --out bench/out/cifar10_train.npz
#   OUT        where task_tables_runs.tar and task_tables_gpu.log go ($OUT on the GPU machine)
#   full|tiny  full size (default), or a tiny run that checks this script on a CPU in minutes
#
# Then, on any machine with the test split: python bench/task_tables.py evaluate
#   --runs OUT/task_tables_runs.tar
# Stages run side by side (one process per classifier and level, each its three seeds in one
# compilation); each table run also stops at a time limit (counted after its first
# stretch of steps, which includes compilation), so one slow stage cannot take the others with it.
set -uo pipefail
NPZ=$(realpath "$1")
OUT=$(realpath -m "$2")
SIZE=${3:-full}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
mkdir -p "$OUT"
LOG="$OUT/task_tables_gpu.log"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
exec > >(tee "$LOG") 2>&1

if [ "$SIZE" = tiny ]; then
  EPOCHS=0.1; STEPS=4; BATCH=16; EVAL=2; LIMIT=600; SEEDS=0,1,2; CBATCH=32
else
  EPOCHS=8; STEPS=600; BATCH=128; EVAL=100; LIMIT=40; SEEDS=0,1,2; CBATCH=128
fi

# djpeg.train and djpeg.models are the repository's train/ and models/: without an installed
# package, a tree of links makes them importable (commands run outside the repository, so that
# its own djpeg/ folder does not shadow the tree).
if ! (cd "$WORK" && python3 -c "import djpeg.train.task_tables" 2>/dev/null); then
  mkdir -p "$WORK/pkg/djpeg"
  for f in "$REPO"/djpeg/*; do ln -s "$f" "$WORK/pkg/djpeg/"; done
  ln -s "$REPO/models" "$WORK/pkg/djpeg/models"
  ln -s "$REPO/train" "$WORK/pkg/djpeg/train"
  export PYTHONPATH="$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}"
fi
cd "$WORK"
B="python3 $REPO/bench/task_tables.py"
RUNS="$WORK/runs"
DATA="$WORK/cifar10"
T0=$SECONDS
stamp() { echo "=== $((SECONDS - T0)) s: $*"; }

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
stamp "unpacking $NPZ"
$B unpack-data --npz "$NPZ" --out "$DATA" || exit 1

tables() {   # classifier kind [--one-table]: the three seeds of one level, in one process
  $B train-tables --classifier "$1" --kind "$2" --seeds "$SEEDS" --data "$DATA" --runs "$RUNS" \
    --work "$WORK/scratch" --steps "$STEPS" --batch "$BATCH" --eval-every "$EVAL" \
    --time-limit "$LIMIT" ${3:-} > "$WORK/$1-$2${3:+-onetable}.log" 2>&1
  echo "--- $1 $2 ${3:-} (rc $?, $((SECONDS - T0)) s)"
  tail -n 4 "$WORK/$1-$2${3:+-onetable}.log"
}
alternate() {   # [--one-table]
  $B train-tables --classifier consistency --kind alternate --seeds 0 --data "$DATA" \
    --runs "$RUNS" --work "$WORK/scratch" --steps "$STEPS" --batch "$BATCH" \
    --eval-every "$EVAL" --rounds 3 ${1:-} > "$WORK/alternate${1:+-onetable}.log" 2>&1
  echo "--- alternate ${1:-} (rc $?, $((SECONDS - T0)) s)"
  tail -n 4 "$WORK/alternate${1:+-onetable}.log"
}
classifier() {   # method
  $B train-classifier --method "$1" --data "$DATA" --runs "$RUNS" --work "$WORK/scratch" \
    --epochs "$EPOCHS" --batch-size "$CBATCH" > "$WORK/classifier-$1.log" 2>&1
  local rc=$?
  echo "--- classifier $1 (rc $rc, $((SECONDS - T0)) s)"; tail -n 3 "$WORK/classifier-$1.log"
  return $rc
}

stamp "training the classifiers and, as each is ready, its tables"
# (Explicit process ids: a bare `wait` would also wait for the log's tee.)
( classifier plain && { tables plain family & a=$!; tables plain net & b=$!;
                        tables plain block & c=$!; tables plain family --one-table & e=$!;
                        wait $a $b $c $e; } ) &
PLAIN=$!
( classifier consistency && { tables consistency family & a=$!; tables consistency net & b=$!;
                              tables consistency block & c=$!; alternate & d=$!;
                              tables consistency family --one-table & e=$!;
                              alternate --one-table & f=$!; wait $a $b $c $d $e $f; } ) &
CONSISTENCY=$!
wait $PLAIN $CONSISTENCY
stamp "training done"
cp "$WORK"/*.log "$RUNS/" 2>/dev/null
$B pack --runs "$RUNS" --out "$OUT/task_tables_runs.tar"
stamp "packed into $OUT/task_tables_runs.tar"
find "$RUNS" -name summary.json | sort | while read -r f; do
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[1][len(sys.argv[2]):], s['steps'], 'steps', round(s['seconds']), 's')" "$f" "$RUNS"
done
rm -rf "$WORK"
