"""Speed and peak memory of the differentiable codec, beside kornia's, measured in one run.

  python bench/codec_speed.py [--batch 16] [--size 512] [--repeats 5] [--quality 75]

For each codec this runs a fresh child process (so peak memory is its own): it builds a batch of
random RGB images, warms up (compiles), then times the forward pass (images -> JPEG'd images)
and forward+backward (gradient of the MSE to the input with respect to the images and the
quality). Megapixels per second count image pixels (batch x H x W). On the CPU, peak memory is the
child's peak resident set size minus its resident size just before the first codec call (after
imports and input creation), so it covers compilation, buffers and temporaries; on a GPU it is
the accelerator's peak bytes in use (JAX's allocator statistics, torch.cuda.max_memory_allocated).

djpeg runs on JAX's default backend (a GPU when jax has one), kornia on CUDA when torch sees a
GPU (`--device cpu` keeps it on the CPU).

Rows: djpeg faithful (bit exact with libjpeg-turbo, the default), djpeg float (faithful=False),
and kornia's `jpeg_codec_differentiable` (Reich et al.'s codec, PyTorch, CPU) if installed
(`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from common import median_time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device_peak_mb(device) -> float | None:
  """Peak accelerator bytes in use (MB), or None on the CPU / without allocator statistics."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  return stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None


def run_djpeg(args, faithful: bool) -> dict:
  import jax
  import jax.numpy as jnp

  import djpeg

  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((args.batch, args.size, args.size, 3), np.float32))
  quality = jnp.full((args.batch,), float(args.quality), jnp.float32)

  def forward(x, q):
    return djpeg.jpeg(x, quality=q, faithful=faithful)

  def loss(x, q):
    return jnp.mean((forward(x, q) - jax.lax.stop_gradient(x)) ** 2)

  fwd = jax.jit(forward)
  fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1)))
  base = _rss_mb()
  start = time.perf_counter()
  jax.block_until_ready(fwd(images, quality))
  jax.block_until_ready(fwd_bwd(images, quality))
  compile_s = time.perf_counter() - start
  t_fwd = median_time(lambda: jax.block_until_ready(fwd(images, quality)), args.repeats,
                      warmup=True)
  t_bwd = median_time(lambda: jax.block_until_ready(fwd_bwd(images, quality)), args.repeats,
                      warmup=True)
  device_peak = _device_peak_mb(jax.devices()[0])
  return dict(fwd=t_fwd, fwd_bwd=t_bwd, compile_s=compile_s,
              peak_mb=device_peak if device_peak is not None else _peak_mb() - base,
              version=f"jax {jax.__version__}, {jax.default_backend()} ({jax.devices()[0].device_kind})")


def run_kornia(args) -> dict:
  import kornia
  import torch

  torch.manual_seed(0)
  cuda = args.device != "cpu" and torch.cuda.is_available()
  device = torch.device("cuda" if cuda else "cpu")
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.random((args.batch, 3, args.size, args.size), np.float32)).to(device)
  quality = torch.full((args.batch,), float(args.quality), device=device)
  codec = kornia.enhance.jpeg_codec_differentiable

  def forward():
    with torch.no_grad():
      codec(images, quality)
    sync()

  def forward_backward():
    x = images.clone().requires_grad_(True)
    q = quality.clone().requires_grad_(True)
    loss = torch.mean((codec(x, q) - images) ** 2)
    loss.backward()
    sync()

  base = _rss_mb()
  start = time.perf_counter()
  forward_backward()
  warm_s = time.perf_counter() - start
  t_fwd = median_time(forward, args.repeats, warmup=True)
  t_bwd = median_time(forward_backward, args.repeats, warmup=True)
  peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_mb() - base
  where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
  return dict(fwd=t_fwd, fwd_bwd=t_bwd, peak_mb=peak, compile_s=warm_s,
              version=f"kornia {kornia.__version__}, torch {torch.__version__}, {where}")


CODECS = {
    "djpeg faithful": lambda a: run_djpeg(a, True),
    "djpeg float": lambda a: run_djpeg(a, False),
    "kornia": run_kornia,
}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--quality", type=float, default=75)
  parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated subset")
  parser.add_argument("--device", choices=("auto", "cpu"), default="auto",
                      help="kornia's device: auto (CUDA when torch sees a GPU) or cpu")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.child:
    print(json.dumps(CODECS[args.child](args)))
    return 0

  megapixels = args.batch * args.size * args.size / 1e6
  print(f"Differentiable JPEG codecs: batch {args.batch} x {args.size}x{args.size} RGB, "
        f"quality {args.quality:g}, 4:2:0, {os.cpu_count()} CPU cores; median of {args.repeats}.\n")
  results = {}
  for name in args.codecs.split(","):
    cmd = [sys.executable, __file__, "--child", name, "--batch", str(args.batch), "--size",
           str(args.size), "--repeats", str(args.repeats), "--quality", str(args.quality),
           "--device", args.device]
    env = dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
      last = (proc.stderr.strip().splitlines() or ["?"])[-1]
      print(f"{name}: skipped ({last})")
      continue
    results[name] = json.loads(proc.stdout.strip().splitlines()[-1])

  anchor = results.get("kornia")
  print("| codec | forward MP/s | forward+backward MP/s | x kornia (fwd+bwd) | peak memory MB "
        "| compile / warm-up s |")
  print("|---|---|---|---|---|---|")
  for name, r in results.items():
    speedup = f"{anchor['fwd_bwd'] / r['fwd_bwd']:.1f}x" if anchor else "n/a"
    print(f"| {name} | {megapixels / r['fwd']:.1f} | {megapixels / r['fwd_bwd']:.2f} | {speedup} "
          f"| {r['peak_mb']:.0f} | {r['compile_s']:.1f} |")
  print()
  for name, r in results.items():
    print(f"{name}: {r['version']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
