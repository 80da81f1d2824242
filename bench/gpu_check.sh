#!/usr/bin/env bash
# The GPU checks, in one run on a machine with an NVIDIA GPU and JAX/torch with CUDA installed:
#   1. the fidelity tests (bit exactness with libjpeg-turbo, gradients, rate, exact bytes) on the GPU;
#   2. bench/fidelity.py on a few Kodak images (every quality, both subsamplings);
#   3. bench/codec_speed.py, djpeg beside kornia on CUDA, at two batch sizes;
#   4. training throughput: QTableNet (`djpeg-train tables net`) and feature consistency on CIFAR.
#
#   OUT=out KODAK=path TRAIN=path CIFAR=path bash bench/gpu_check.sh
#
# Each step has its own time limit so one slow step cannot take the others with it; logs go to $OUT.
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
KODAK=${KODAK:-../shared/data/kodak}
TRAIN=${TRAIN:-../shared/data/train}
CIFAR=${CIFAR:-../shared/data/cifar10}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
step() { local name=$1 limit=$2; shift 2; echo "=== $name"; local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -n 40; echo "=== $name: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
step tests 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_codec_fidelity.py \
  tests/test_gradients.py tests/test_rate.py tests/test_exact_bytes.py tests/test_codec_api.py
step fidelity 60 python3 bench/fidelity.py --images "$KODAK"
step speed16 75 python3 bench/codec_speed.py --batch 16 --size 512
step speed128 75 python3 bench/codec_speed.py --batch 128 --size 512 --codecs "djpeg faithful,djpeg float,kornia"
step train_net 60 python3 -m train.cli tables net --data "$TRAIN" --out "$OUT/net" --steps 600 \
  --batch 16 --log-every 100 --eval-every 100000 --checkpoint-every 100000
step train_consistency 75 python3 -m train.cli consistency --method consistency --quality-block 1 \
  --data "$CIFAR" --out "$OUT/fc" --epochs 2 --log-every 10 --checkpoint-every 100000 --eval-limit 500
for f in "$OUT"/net/metrics.csv "$OUT"/fc/metrics.csv; do echo "--- $f"; cat "$f" 2>/dev/null | head -30; done
