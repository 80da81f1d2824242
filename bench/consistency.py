"""Feature consistency training vs plain training and JPEG augmentation on CIFAR-10, in one run.

  python bench/consistency.py [--epochs 8] [--seeds 3] [--data ../shared/data/cifar10]
                              [--methods plain,augment,consistency] [--dct-seeds 1] [--fresh]

1. Codec overhead: the time of one consistency training step with the differentiable JPEG
   (`djpeg.jpeg` at a random quality per image, inside the jitted step) and without it (the
   clean batch as its own copy: same network work), same model and batch; both and the ratio.
2. Each method x seed trains a ResNet on `<data>/train` (`djpeg.train.consistency`, same settings
   except the method; the consistency model also has the quality-conditioned block of
   `--quality-block`, which gets each test file's quality from its tables) and is evaluated on
   all of `<data>/test`, clean and compressed by Pillow (libjpeg-turbo, 4:2:0) at qualities 10,
   20, 30, 50, 75, 90. Runs live in `bench/out/consistency/<method>-s<seed>`; a finished run
   (results.json) is reused unless `--fresh` (or refused if its settings differ), an
   interrupted one resumes from its checkpoint.
3. The DCT-domain model (`djpeg.models.dct_classifier.DCTResNet`, feature consistency with quality 100
   as "clean") trained the same way and tested on coefficients read from the Pillow files with
   `djpeg.load_coefficients`; and the inference speed of both models: forward only, and from
   JPEG bytes (Pillow decode + pixel model vs `load_coefficients` + DCT model).

Prints the accuracy table (mean ± standard deviation over seeds, in points), the acceptance
checks, and writes `bench/out/consistency/{summary.json, accuracy.png}`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONDITIONS = ("clean", 90, 75, 50, 30, 20, 10)


def codec_overhead(cfg, *, steps: int) -> dict:
  """Seconds per consistency step with and without the JPEG codec in the step, and the codec alone.

  The two steps alternate, so that load from other processes on a shared machine hits both alike;
  medians over `steps` pairs.
  """
  import jax
  import jax.numpy as jnp

  import djpeg
  from djpeg.train import consistency
  from djpeg.train import state as state_lib

  rng = np.random.default_rng(0)
  batch = (rng.random((cfg.batch_size, 32, 32, 3), np.float32),
           rng.integers(0, 10, cfg.batch_size).astype(np.int32))
  runners = {}
  for name, codec in (("without", False), ("with", True)):
    model = consistency.build_model(cfg, 10)
    tx = consistency.make_optimizer(cfg, 1000, 100)
    graphdef, state = state_lib.create_state(model, tx, seed=0)
    loss_fn = consistency.make_loss_fn(cfg, codec=codec)
    step = jax.jit(state_lib.make_train_step(graphdef, tx, loss_fn))
    state, _ = step(state, batch)
    jax.block_until_ready(state)
    runners[name] = [step, state]
  codec_fn = jax.jit(lambda x, q: djpeg.jpeg(x, quality=q, subsampling=cfg.subsampling))
  images = jnp.asarray(batch[0])
  qualities = jnp.asarray(rng.integers(10, 91, cfg.batch_size), jnp.float32)
  jax.block_until_ready(codec_fn(images, qualities))
  times = {"without": [], "with": [], "codec": []}
  for _ in range(steps):
    for name, runner in runners.items():
      t0 = time.perf_counter()
      runner[1], m = runner[0](runner[1], batch)
      jax.block_until_ready(m)
      times[name].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    jax.block_until_ready(codec_fn(images, qualities))
    times["codec"].append(time.perf_counter() - t0)
  out = {k: float(np.median(v)) for k, v in times.items()}
  out["ratio"] = out["with"] / out["without"]
  return out


def inference_speed(pixel_run, dct_run, *, n: int = 1000, quality: int = 50) -> dict:
  """Images per second: forward only, and from JPEG bytes, for the pixel and the DCT model."""
  import io

  import jax
  from PIL import Image

  import djpeg
  from djpeg.models.dct_classifier import stack_coefficients
  from djpeg.train import consistency, data, evaluate

  folder = data.ImageFolder(os.path.join(pixel_run.cfg.data, "test"), batch_size=n,
                            shuffle=False, drop_last=False, epochs=1, uint8=True)
  pixels, _ = next(folder)
  n = len(pixels)
  files = [evaluate.pillow_bytes(p, quality) for p in pixels]
  q = np.full((n,), float(quality), np.float32)
  out = {}
  for name, run in (("pixel", pixel_run), ("dct", dct_run)):
    predict = consistency.make_predict(run.graphdef, run.cfg)
    state = jax.device_get(run.state)

    if name == "pixel":
      def load():
        return np.stack([np.asarray(Image.open(io.BytesIO(f))) for f in files]
                        ).astype(np.float32) / 255.0
    else:
      def load():
        return stack_coefficients([djpeg.load_coefficients(f) for f in files])

    x = load()
    jax.block_until_ready(predict(state, x, q))
    t0 = time.perf_counter()
    x = load()
    t_load = time.perf_counter() - t0
    times = []
    for _ in range(3):
      t0 = time.perf_counter()
      jax.block_until_ready(predict(state, x, q))
      times.append(time.perf_counter() - t0)
    t_fwd = float(np.median(times))
    out[name] = {"forward_img_s": n / t_fwd, "from_bytes_img_s": n / (t_fwd + t_load),
                 "load_img_s": n / t_load}
  out["n"] = n
  return out


def _finished(cfg, fresh: bool) -> dict | None:
  """The results.json of the finished run `cfg` describes, or None if it has to be trained.

  Refuses a folder whose run was trained with other settings, rather than reporting it as `cfg`.
  """
  from djpeg.train import consistency

  done = os.path.join(cfg.out, "results.json")
  if fresh or not os.path.exists(done):
    return None
  with open(done) as f:
    result = json.load(f)
  diff = consistency.config_differences(result["config"], cfg)
  if diff:
    raise SystemExit(f"{cfg.out} was trained with other settings {diff} (saved, now): pass "
                     "--fresh to retrain it, or another --out.")
  return result


def summarize(results: dict) -> dict:
  """{method: {condition: (mean, std) in points}} from {method: [results.json dicts]}."""
  table = {}
  for method, runs in results.items():
    table[method] = {}
    for c in CONDITIONS:
      v = np.asarray([100 * r["accuracy"][str(c)] for r in runs])
      table[method][c] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
  return table


def markdown(table: dict, seeds: dict) -> str:
  names = ["clean" if c == "clean" else f"q{c}" for c in CONDITIONS]
  head = "| method | seeds | " + " | ".join(names)
  lines = [head + " |", "|---" * (len(CONDITIONS) + 2) + "|"]
  for method, row in table.items():
    cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in (row[c] for c in CONDITIONS))
    lines.append(f"| {method} | {seeds[method]} | {cells} |")
  return "\n".join(lines)


def plot(table: dict, path: str, split: str = "test") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  qs = sorted(c for c in CONDITIONS if c != "clean")
  fig, ax = plt.subplots(figsize=(6, 4))
  for method, row in table.items():
    m = np.asarray([row[q][0] for q in qs])
    s = np.asarray([row[q][1] for q in qs])
    line, = ax.plot(qs, m, "o-", label=method)
    ax.fill_between(qs, m - s, m + s, color=line.get_color(), alpha=0.2)
    ax.axhline(row["clean"][0], ls=":", color=line.get_color())
  ax.set_xlabel("JPEG quality of the test images (libjpeg-turbo, 4:2:0)")
  ax.set_ylabel(f"CIFAR-10 {split} accuracy (%)")
  ax.set_title("dotted: clean test images; bands: ±1 std over seeds", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def checks(table: dict) -> list[str]:
  """The acceptance criteria, each as a PASS/FAIL line."""
  if not all(m in table for m in ("plain", "augment", "consistency")):
    return []
  fc, plain, aug = table["consistency"], table["plain"], table["augment"]
  lines = []
  gap = fc[10][0] - plain[10][0]
  lines.append(f"{'PASS' if gap >= 10 else 'FAIL'}  quality 10: consistency - plain = {gap:+.1f} "
               "points (needs >= +10)")
  for c in CONDITIONS:
    d = fc[c][0] - aug[c][0]
    spread = max(fc[c][1], aug[c][1])
    verdict = "PASS" if d >= 0 else ("TIE " if d >= -spread else "FAIL")
    lines.append(f"{verdict}  {c if c == 'clean' else 'q' + str(c)}: consistency - augment = "
                 f"{d:+.1f} points (spread {spread:.1f})")
  d = fc["clean"][0] - plain["clean"][0]
  lines.append(f"{'PASS' if d >= -1 else 'FAIL'}  clean: consistency - plain = {d:+.1f} points "
               "(needs >= -1)")
  return lines


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cifar10"))
  p.add_argument("--out", default=os.path.join(REPO, "bench", "out", "consistency"))
  p.add_argument("--epochs", type=float, default=8)
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--methods", default="plain,augment,consistency")
  p.add_argument("--widths", default="16,32,64")
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--beta", type=float, default=0.5)
  p.add_argument("--layers", default="stage3")
  p.add_argument("--distance", choices=("l2", "cosine"), default="l2")
  p.add_argument("--jpeg-weight", type=float, default=1.0,
                 help="weight of the JPEG copy's cross-entropy (consistency method)")
  p.add_argument("--quality-block", type=int, default=1,
                 help="stage after which the consistency model has a quality-conditioned block "
                      "(0: none; plain and augment keep the unconditioned network)")
  p.add_argument("--validation", type=int, default=0,
                 help="hold out N training images per class and evaluate there, not on test/")
  p.add_argument("--dct-seeds", type=int, default=1, help="0 skips the DCT-domain model")
  p.add_argument("--dct-epochs", type=float, default=None, help="default: --epochs")
  p.add_argument("--eval-limit", type=int, default=None, help="test images (default: all)")
  p.add_argument("--overhead-steps", type=int, default=20)
  p.add_argument("--overhead-only", action="store_true", help="measure the codec overhead, exit")
  p.add_argument("--fresh", action="store_true", help="retrain runs that already have results")
  args = p.parse_args(argv)

  import jax

  from djpeg.train import consistency

  widths = tuple(int(w) for w in args.widths.split(","))
  base = consistency.Config(
      data=args.data, epochs=args.epochs, widths=widths, blocks=(1,) * len(widths),
      batch_size=args.batch_size, beta=args.beta, layers=tuple(args.layers.split(",")),
      distance=args.distance, jpeg_weight=args.jpeg_weight, validation=args.validation,
      eval_limit=args.eval_limit, checkpoint_every=100, log_every=50)
  # Only the consistency model gets the quality block; the baselines keep the plain network.
  method_settings = {"consistency": {"quality_block": args.quality_block or None}}
  consistency.split_folders(args.data)
  os.makedirs(args.out, exist_ok=True)
  print(f"djpeg feature consistency benchmark: {jax.device_count()} {jax.default_backend()} "
        f"device(s), data {os.path.abspath(args.data)}, {args.epochs:g} epochs, widths {widths}, "
        f"batch {args.batch_size}, seeds {args.seeds}", flush=True)

  overhead = codec_overhead(dataclasses.replace(base, method="consistency",
                                                **method_settings["consistency"]),
                            steps=args.overhead_steps)
  print(f"\ncodec overhead (consistency step, batch {args.batch_size} of 32x32, same model): "
        f"without JPEG {1e3 * overhead['without']:.0f} ms, with djpeg.jpeg "
        f"{1e3 * overhead['with']:.0f} ms, ratio {overhead['ratio']:.3f} "
        f"({100 * (overhead['ratio'] - 1):+.1f}%); djpeg.jpeg alone on the batch "
        f"{1e3 * overhead['codec']:.0f} ms\n", flush=True)
  if args.overhead_only:
    return 0

  methods = args.methods.split(",")
  test_set = None
  results = {}
  for seed in range(args.seeds):
    for method in methods:
      cfg = dataclasses.replace(base, method=method, seed=seed,
                                out=os.path.join(args.out, f"{method}-s{seed}"),
                                **method_settings.get(method, {}))
      result = _finished(cfg, args.fresh)
      if result is not None:
        print(f"[{method} s{seed}] reusing {cfg.out}", flush=True)
      else:
        if test_set is None:
          t0 = time.perf_counter()
          test_set = consistency.make_test_set(base, cache=True)
          print(f"test split compressed by Pillow at {base.eval_qualities} "
                f"({time.perf_counter() - t0:.0f} s)", flush=True)
        result = consistency.run_and_evaluate(cfg, test_set=test_set)
      results.setdefault(method, []).append(result)

  dct_results, speed = [], None
  if args.dct_seeds:
    dct_base = dataclasses.replace(base, model="dct", method="consistency", widths=(64, 128),
                                   blocks=(1, 1), layers=("pooled",),
                                   epochs=args.dct_epochs or args.epochs)
    dct_test = None
    for seed in range(args.dct_seeds):
      cfg = dataclasses.replace(dct_base, seed=seed, out=os.path.join(args.out, f"dct-s{seed}"))
      result = _finished(cfg, args.fresh)
      if result is not None:
        dct_results.append(result)
        continue
      if dct_test is None:
        dct_test = consistency.make_test_set(dct_base, cache=True)
      dct_results.append(consistency.run_and_evaluate(cfg, test_set=dct_test))
    # Speed: the trained models (restored from their final checkpoints, quietly).
    pixel_cfg = dataclasses.replace(base, method="consistency", seed=0,
                                    out=os.path.join(args.out, "consistency-s0"),
                                    **method_settings["consistency"])
    dct_cfg = dataclasses.replace(dct_base, seed=0, out=os.path.join(args.out, "dct-s0"))
    if "consistency" in methods:
      speed = inference_speed(consistency.train(pixel_cfg, quiet=True),
                              consistency.train(dct_cfg, quiet=True))

  table = summarize(results)
  seeds = {m: len(r) for m, r in results.items()}
  if dct_results:
    table["DCT-domain consistency"] = summarize({"dct": dct_results})["dct"]
    seeds["DCT-domain consistency"] = len(dct_results)
  split = "validation (held-out training)" if args.validation else "test"
  print(f"\nCIFAR-10 {split} accuracy (%), {results[methods[0]][0]['test_images']} {split} images "
        f"compressed by libjpeg-turbo (Pillow, 4:2:0); {args.epochs:g} epochs, mean ± std over "
        "seeds (DCT model: 'clean' = quality 100):\n")
  md = markdown(table, seeds)
  print(md)
  train_min = {m: np.mean([r["train_seconds"] for r in rs]) / 60 for m, rs in results.items()}
  print("\ntraining time per run (min): " + ", ".join(f"{m} {t:.1f}" for m, t in train_min.items()))
  if dct_results:
    print(f"  DCT-domain {np.mean([r['train_seconds'] for r in dct_results]) / 60:.1f}")
  if speed:
    print(f"\ninference (images/s, batch {speed['n']}, quality 50): "
          f"pixel ResNet forward {speed['pixel']['forward_img_s']:.0f}, from JPEG bytes (Pillow "
          f"decode + forward) {speed['pixel']['from_bytes_img_s']:.0f}; DCT ResNet forward "
          f"{speed['dct']['forward_img_s']:.0f}, from JPEG bytes (load_coefficients + forward) "
          f"{speed['dct']['from_bytes_img_s']:.0f}")
  lines = checks(table)
  if lines:
    print("\nacceptance checks:\n  " + "\n  ".join(lines))
  print(f"\ncodec overhead: {1e3 * overhead['without']:.0f} ms -> {1e3 * overhead['with']:.0f} ms "
        f"per step, x{overhead['ratio']:.3f} ({'PASS' if overhead['ratio'] <= 1.3 else 'FAIL'}: "
        "needs <= 1.30)")
  plot(table, os.path.join(args.out, "accuracy.png"), split.split()[0])
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump({"table": {m: {str(c): v for c, v in row.items()} for m, row in table.items()},
               "seeds": seeds, "overhead": overhead, "speed": speed, "markdown": md,
               "checks": lines, "args": vars(args)}, f, indent=1)
  print(f"\nwrote {os.path.join(args.out, 'accuracy.png')} and summary.json")
  return 0


if __name__ == "__main__":
  sys.exit(main())
