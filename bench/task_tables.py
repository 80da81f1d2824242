"""Task-aware JPEG tables on CIFAR-10: accuracy against bits per pixel, every point a real file.

  python bench/task_tables.py evaluate --runs RUNS [--data ../shared/data/cifar10]
                                       [--out bench/out/task_tables] [--limit N]

`RUNS` is what `bench/task_tables_gpu.sh` trains (a folder, or the `.tar` it packs): the
classifiers (`classifiers/{plain,consistency}.npz`, `djpeg-train consistency` on `train/`),
and the task tables learned for each (`tables/<classifier>/<kind>-s<seed>/`, `djpeg-train
task-tables` on `train/`, 3 seeds) and the alternating run (`tables/alternate-s<seed>/`).

Every test image of `<data>/test` (all 10,000, or a fixed random `--limit`) is written as a JPEG
file at every point of every row and decoded by libjpeg-turbo (Pillow); the classifier sees the
decoded pixels (a quality-conditioned one also the quality its tables say, as
`djpeg.train.evaluate` does). Rows (4:2:0, optimized Huffman tables throughout):

* libjpeg-turbo's quality sweep (Annex K tables), written by libjpeg-turbo itself (Pillow,
  `optimize=True`): the anchor; and the same coefficients in djpeg's compact headers (what the
  headers alone save);
* djpeg's PSNR-optimized tables: the shipped family (`--tables learned`, levels 1..12), the
  same with luma's table for all components (one DQT entry: the one-table rows' control), and
  per-image `djpeg.optimize_tables` at a few lambdas, written by `djpeg.dumps`;
* task tables, per classifier and seed: the family (each level), the family of one table for
  all components, the per-image network (a ladder of lambdas), the per-image network with the
  classifier's sensitivity maps as trellis weights (`djpeg.encoder.compress(...,
  saliency=map, mode="mse")`), and, as an ablation, the same tables with a uniform trellis; and
  the alternating runs' families (two tables, one table) with their own classifiers.

djpeg's files have compact headers (`djpeg.dumps(..., compact=True, jfif=False)`: one DQT and
one DHT segment, Huffman tables shared by luma and chroma where smaller, no JFIF APP0; `--headers
libjpeg` writes libjpeg-turbo's layout instead).

Bits per pixel are the whole file's bytes * 8 / (32 * 32), and, as a second axis, the
entropy-coded data's alone (the bytes after the SOS header; on 32x32 images the headers are
about 300 bytes, 2.4 bits per pixel, whatever the tables). The bits saved at equal accuracy are a
BD-rate with accuracy as the quality axis (log-rate interpolated by PCHIP over each row's
accuracy frontier, averaged over the accuracies both rows reach), against libjpeg-turbo with the
same classifier; and the bits a row needs to stay within 1 and 3 points of the classifier's
clean accuracy, against libjpeg-turbo's. Task rows give mean +- std over the seeds.

Training helpers for `bench/task_tables_gpu.sh` (each takes its paths as arguments):

  python bench/task_tables.py pack-data   --data ../shared/data/cifar10 --out FILE.npz
  python bench/task_tables.py unpack-data --npz FILE.npz --out DIR
  python bench/task_tables.py train-classifier --method plain --data DIR --runs RUNS --epochs E
  python bench/task_tables.py import-classifier --run RUN --name plain --runs RUNS
  python bench/task_tables.py train-tables --classifier plain --kind family --seeds 0,1,2
                                           --data DIR --runs RUNS [--steps N --batch B ...]
  python bench/task_tables.py pack --runs RUNS --out FILE.tar

Diagnosis of the trellis rows, on training images (tuning data, never the test split):

  python bench/task_tables.py trellis-check --runs RUNS [--classifier plain] [--seed 0]
                                            [--images 400] [--lambdas 2,10,50]
                                            [--backgrounds 0.01,0.1,0.3]

prints, at each lambda of the per-image network with trellis weights (`block`), the bits and
accuracy with no trellis, the uniform trellis and the trellis weighted by the classifier's
sensitivity at each background. And with the classifier's sensitivity as the trellis's
distortion, as Salamah et al. weight their soft-decision quantization:

  python bench/task_tables.py sensitivity-trellis --runs RUNS [--classifier plain]
                                                  [--images 1500] [--fit-images 2000]
                                                  [--levels 1,3,5,7,9,11]

codes other training images with the shipped PSNR family (luma's table for all components) at
each level: without a trellis, with the MSE trellis, and with the trellis's squared error
weighted per frequency and component by the mean squared gradient of the classifier's
cross-entropy with respect to each DCT coefficient (E[(dL/dX)^2], measured on `--fit-images`
training images at that level: the Fisher information's diagonal), per image (label-free, half
the image's own, half the dataset's), and with per-block weights from the image's gradient
energy as well; each with the lambda its weights give the tables (`table_slope`), and prints
the BD-rate of each trellis against no trellis at equal accuracy.
"""

from __future__ import annotations

import argparse
import functools
import glob
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(REPO, "..", "shared", "data", "cifar10")

LIBJPEG_QUALITIES = (5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)
OPTIMIZE_LAMBDAS = (0.0005, 0.002, 0.008, 0.03, 0.12)     # per-image PSNR tables (bpp per MSE)
NET_POINTS = 8                 # lambdas of the per-image network, log-spaced over its range
BLOCK_POINTS = 5               # lambdas with trellis weights (each image through the trellis)
BUDGETS = (1.0, 3.0)           # accuracy points below the clean model's
ANCHOR = "libjpeg-turbo (Annex K)"
PSNR_ROWS = ("djpeg PSNR family (shipped)", "djpeg PSNR per-image (optimize_tables)",
             "djpeg PSNR family (shipped), one table")
TASK_ROWS = {"family": "task family", "onetable": "task family, one table",
             "net": "task per-image",
             "block": "task per-image + trellis weights",
             "block-uniform": "task per-image + uniform trellis (ablation)",
             "alternate": "task family, alternating",
             "alternate-onetable": "task family, one table, alternating"}
#: libjpeg-turbo's own coefficients in djpeg's compact files: what the headers alone save.
COMPACT_ANCHOR = "libjpeg-turbo (Annex K), compact headers"


# ----------------------------------------------------------------------------------- files


def scan_bytes(data: bytes) -> int:
  """Bytes of a baseline JPEG's entropy-coded data: after the SOS segment, before EOI."""
  pos = 2
  while pos + 4 <= len(data):
    if data[pos] != 0xFF:
      raise ValueError(f"not a marker at byte {pos}")
    marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
    if marker == 0xDA:
      return len(data) - (pos + 2 + length) - 2
    pos += 2 + length
  raise ValueError("no SOS segment")


def decode_files(files: list[bytes]):
  """(uint8 pixels (N, H, W, 3) as libjpeg-turbo decodes them, (N,) quality of each file's luma
  table, (N,) file bytes, (N,) entropy-coded bytes)."""
  from PIL import Image

  from djpeg.train import evaluate

  pixels, qualities = [], []
  for f in files:
    with Image.open(io.BytesIO(f)) as im:
      pixels.append(np.asarray(im.convert("RGB")))
      qualities.append(evaluate.estimate_quality(np.asarray(im.quantization[0]).reshape(8, 8)))
  return (np.stack(pixels), np.asarray(qualities, np.float32),
          np.asarray([len(f) for f in files]), np.asarray([scan_bytes(f) for f in files]))


def libjpeg_files(pixels: np.ndarray, quality: int) -> list[bytes]:
  """libjpeg-turbo's own files (Pillow): Annex K tables at `quality`, optimized Huffman, 4:2:0."""
  from PIL import Image

  out = []
  for p in pixels:
    buf = io.BytesIO()
    Image.fromarray(p).save(buf, "JPEG", quality=int(quality), subsampling=2, optimize=True)
    out.append(buf.getvalue())
  return out


#: How djpeg's rows are written: the fewest header bytes (`djpeg.dumps(..., compact=True,
#: jfif=False)`: one DQT and one DHT segment, Huffman tables shared by luma and chroma where
#: smaller, no JFIF APP0), or libjpeg-turbo's layout ("libjpeg", `--headers libjpeg`).
HEADERS = {"compact": dict(compact=True, jfif=False), "libjpeg": {}}
_headers = HEADERS["compact"]


def compact_files(files: list[bytes]) -> list[bytes]:
  """The same coefficients (libjpeg-turbo's files) rewritten with djpeg's compact headers."""
  import djpeg

  return [djpeg.dumps(djpeg.load_coefficients(f), **HEADERS["compact"]) for f in files]


def djpeg_files(pixels: np.ndarray, tables, batch: int = 500) -> list[bytes]:
  """djpeg's files with `tables`: `(C, 8, 8)` for all images or `(N, C, 8, 8)` per image."""
  import djpeg

  tables = np.asarray(tables)
  out = []
  for lo in range(0, len(pixels), batch):
    chunk = pixels[lo:lo + batch]
    if tables.ndim == 3:
      out += djpeg.dumps(chunk, qtables=tables, **_headers)
    else:
      c = djpeg.encode(chunk.astype(np.float32) / 255.0, tables=tables[lo:lo + batch])
      out += djpeg.dumps(c, **_headers)
  return out


def trellis_files(pixels: np.ndarray, tables: np.ndarray, maps=None, background=None):
  """djpeg's files through the trellis (`djpeg.encoder.compress`, mode "mse"): per image
  `tables` `(N, 3, 8, 8)` and, if given, the saliency maps `(N, H, W)` as block weights."""
  import djpeg
  from djpeg.encoder import compress

  out = []
  for i, p in enumerate(pixels):
    kwargs = {} if maps is None else {"saliency": np.asarray(maps[i]), "background": background}
    result = compress(p, tables=tables[i], mode="mse", measure=False, **kwargs)
    out.append(djpeg.dumps(result.coefficients, **_headers))
  return out


# ------------------------------------------------------------------------------ evaluation


class Scorer:
  """Classifies decoded files with each classifier; one jitted predict per classifier."""

  def __init__(self, classifiers: dict, labels: np.ndarray, batch: int = 500):
    import jax

    self.classifiers, self.labels, self.batch = classifiers, labels, batch
    self._predict = jax.jit(lambda net, x, q: net(x, q)[0])

  def accuracy(self, name: str, pixels: np.ndarray, qualities: np.ndarray) -> float:
    import djpeg
    from djpeg.models.dct_classifier import stack_coefficients

    net = self.classifiers[name].network
    correct = 0
    for lo in range(0, len(pixels), self.batch):
      x, q = pixels[lo:lo + self.batch], qualities[lo:lo + self.batch]
      n = len(x)
      if n < self.batch:   # one compiled shape: pad the last batch
        x = np.concatenate([x, np.repeat(x[-1:], self.batch - n, 0)])
        q = np.concatenate([q, np.repeat(q[-1:], self.batch - n, 0)])
      if net.inputs == "pixels":
        inputs = x.astype(np.float32) / 255.0
      else:
        inputs = stack_coefficients([djpeg.load_coefficients(
            djpeg.dumps(p, quality=100)) for p in x])
      logits = np.asarray(self._predict(net, inputs, q))[:n]
      correct += int(np.sum(np.argmax(logits, -1) == self.labels[lo:lo + n]))
    return correct / len(self.labels)


def _point(files, scorer, names, setting) -> dict:
  pixels, qualities, sizes, scans = decode_files(files)
  area = pixels.shape[1] * pixels.shape[2]
  return {"setting": setting, "bpp": float(8 * sizes.mean() / area),
          "payload_bpp": float(8 * scans.mean() / area),
          "accuracy": {n: scorer.accuracy(n, pixels, qualities) for n in names}}


def open_runs(path: str) -> str:
  """The runs folder: `path` itself, or a `.tar` unpacked into a temporary folder."""
  if os.path.isdir(path):
    return path
  if not tarfile.is_tarfile(path):
    sys.exit(f"--runs {path!r} is neither a folder nor a tar file.")
  folder = tempfile.mkdtemp(prefix="task_tables_runs_")
  with tarfile.open(path) as tar:
    tar.extractall(folder, filter="data")
  inner = os.path.join(folder, "runs")
  return inner if os.path.isdir(inner) else folder


def test_split(data: str, limit: int | None):
  from djpeg.train import task_tables

  split = task_tables.load_split(data, "test")
  index = np.arange(len(split.labels))
  if limit is not None:
    index = np.sort(np.random.default_rng(0).permutation(len(index))[:limit])
  return split.images[index], split.labels[index], split.classes


def evaluate_runs(args) -> dict:
  import jax.numpy as jnp

  import djpeg
  from djpeg import roi
  from djpeg.train import task_tables as tt

  global _headers
  _headers = HEADERS[args.headers]
  runs = open_runs(args.runs)
  pixels, labels, classes = test_split(args.data, args.limit)
  n = len(labels)
  classifiers = {os.path.splitext(os.path.basename(p))[0]: tt.load_classifier(p, classes)
                 for p in sorted(glob.glob(os.path.join(runs, "classifiers", "*.npz")))}
  alternates = sorted(glob.glob(os.path.join(runs, "tables", "alternate*-s*")))
  for folder in alternates:
    classifiers[os.path.basename(folder)] = tt.load_classifier(
        os.path.join(folder, "classifier.npz"), classes)
  if not classifiers:
    sys.exit(f"no classifiers in {runs}/classifiers")
  names = list(classifiers)
  scorer = Scorer(classifiers, labels)
  say = lambda text: print(text, flush=True)  # noqa: E731
  say(f"{n} test images of {args.data}; classifiers {names}; runs {runs}")
  t0 = time.time()
  clean = {name: scorer.accuracy(name, pixels, np.full(n, 100.0, np.float32)) for name in names}
  say("clean accuracy: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in clean.items()))
  rows = []     # {"row", "classifier", "seed", "points": [{"setting", "bpp", "payload_bpp", "accuracy"}]}

  def shared_row(title, settings, make):
    points = []
    for setting in settings:
      points.append(_point(make(setting), scorer, names, setting))
      say(f"  {title} {setting}: {points[-1]['bpp']:.3f} bpp, " + ", ".join(
          f"{k} {100 * v:.1f}" for k, v in points[-1]["accuracy"].items()))
    for name in names:
      rows.append({"row": title, "classifier": name, "seed": None, "points": [
          {**p, "accuracy": p["accuracy"][name]} for p in points]})

  shared_row(ANCHOR, LIBJPEG_QUALITIES, lambda q: libjpeg_files(pixels, q))
  if args.headers == "compact":
    shared_row(COMPACT_ANCHOR, LIBJPEG_QUALITIES,
               lambda q: compact_files(libjpeg_files(pixels, q)))
  shipped = djpeg.tables.load_table_family("learned")["tables"]
  shared_row(PSNR_ROWS[0], range(1, len(shipped) + 1),
             lambda k: djpeg_files(pixels, shipped[k - 1]))
  # The one-table rows' control: the same single DQT entry, PSNR tables (luma's for all).
  shared_row(PSNR_ROWS[2], range(1, len(shipped) + 1),
             lambda k: djpeg_files(pixels, shipped[k - 1][[0, 0, 0]]))
  if not args.skip_optimize:
    images = pixels.astype(np.float32) / 255.0
    shared_row(PSNR_ROWS[1], OPTIMIZE_LAMBDAS, lambda lam: djpeg_files(pixels, np.stack(
        [djpeg.optimize_tables(im, lmbda=lam).tables for im in images])))
  say(f"anchors done ({time.time() - t0:.0f} s)")

  def task_row(title, name, seed, settings, make):
    points = []
    for setting in settings:
      p = _point(make(setting), scorer, [name], setting)
      points.append({**p, "accuracy": p["accuracy"][name]})
      say(f"  {title} [{name} s{seed}] {setting:.4g}: {p['bpp']:.3f} bpp, "
          f"{100 * points[-1]['accuracy']:.1f}")
    rows.append({"row": title, "classifier": name, "seed": seed, "points": points})

  images = jnp.asarray(pixels.astype(np.float32) / 255.0)
  for folder in sorted(glob.glob(os.path.join(runs, "tables", "*", "*-s*"))) + alternates:
    kind, seed = os.path.basename(folder).rsplit("-s", 1)
    seed = int(seed)
    name = os.path.basename(folder) if kind.startswith("alternate") else os.path.basename(
        os.path.dirname(folder))
    if name not in classifiers:
      say(f"skipping {folder}: no classifier {name!r}")
      continue
    if kind in ("family", "onetable", "alternate", "alternate-onetable"):
      family = djpeg.tables.load_table_family(os.path.join(folder, "family.json"))
      task_row(TASK_ROWS[kind], name, seed, list(family["lambdas"]), lambda lam: djpeg_files(
          pixels, family["tables"][list(family["lambdas"]).index(lam)]))
      continue
    net, record = tt.load_task_net(folder)
    lo, hi = record["lambda_range"]
    count = NET_POINTS if kind == "net" else BLOCK_POINTS
    ladder = [float(x) for x in np.geomspace(lo, hi, count)]

    def tables_at(lam):
      return np.concatenate([tt.predict_task_tables(net, images[i:i + 500], lam)
                             for i in range(0, n, 500)])

    if kind == "net":
      task_row(TASK_ROWS["net"], name, seed, ladder, lambda lam: djpeg_files(pixels,
                                                                             tables_at(lam)))
      continue
    network = classifiers[name].network

    def saliency(tables):
      maps = [np.asarray(roi.pixel_map(tt.sensitivity_maps(
          network, images[i:i + 500], jnp.asarray(tables[i:i + 500]), task=record["task"],
          layers=tuple(record["layers"])), *pixels.shape[1:3])) for i in range(0, n, 500)]
      return np.concatenate(maps)

    def weighted(lam):
      tables = tables_at(lam)
      return trellis_files(pixels, tables, saliency(tables), record["background"])

    task_row(TASK_ROWS["block"], name, seed, ladder, weighted)
    if seed == 0 or args.all_ablations:
      task_row(TASK_ROWS["block-uniform"], name, seed, ladder,
               lambda lam: trellis_files(pixels, tables_at(lam)))
  return {"test_images": n, "data": os.path.abspath(args.data), "runs": os.path.abspath(runs),
          "clean": clean, "rows": rows, "seconds": time.time() - t0, "headers": args.headers}


# ----------------------------------------------------------------------------- the figures


def frontier(points, axis: str = "bpp") -> tuple[np.ndarray, np.ndarray]:
  """(rates, accuracies) of the points no cheaper point matches in accuracy, rate ascending."""
  ordered = sorted(points, key=lambda p: p[axis])
  rates, accs = [], []
  for p in ordered:
    if not accs or p["accuracy"] > accs[-1]:
      rates.append(p[axis])
      accs.append(p["accuracy"])
  return np.asarray(rates), np.asarray(accs)


def bd_rate(anchor, test, axis: str = "bpp") -> float | None:
  """Mean relative rate difference at equal accuracy (exp of the mean log-rate gap, minus 1), over
  the accuracies both frontiers span; None without overlap."""
  from scipy.interpolate import PchipInterpolator

  (ra, aa), (rt, at) = frontier(anchor, axis), frontier(test, axis)
  if len(aa) < 2 or len(at) < 2:
    return None
  lo, hi = max(aa[0], at[0]), min(aa[-1], at[-1])
  if hi <= lo:
    return None
  grid = np.linspace(lo, hi, 256)
  gap = PchipInterpolator(at, np.log(rt))(grid) - PchipInterpolator(aa, np.log(ra))(grid)
  return float(np.expm1(gap.mean()))


def rate_at(points, accuracy: float, axis: str = "bpp") -> float | None:
  """The rate at which the frontier first reaches `accuracy` (log-linear interpolation); None if
  it never does."""
  rates, accs = frontier(points, axis)
  if not len(accs) or accs[-1] < accuracy:
    return None
  if accs[0] >= accuracy:
    return float(rates[0])
  i = int(np.searchsorted(accs, accuracy))
  t = (accuracy - accs[i - 1]) / (accs[i] - accs[i - 1])
  return float(np.exp((1 - t) * np.log(rates[i - 1]) + t * np.log(rates[i])))


def _stats(values):
  v = np.asarray([x for x in values if x is not None], np.float64)
  if len(v) < len(values) or not len(v):
    return None
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def summarize(result: dict) -> dict:
  """{classifier: {row: {"bd": {axis: stats}, "budget": {b: {axis: stats}}}}}, stats (mean, std, n)
  of the relative savings against the anchor row of the same classifier."""
  table = {}
  rows = result["rows"]
  for name in dict.fromkeys(r["classifier"] for r in rows):
    anchor = next(r for r in rows if r["classifier"] == name and r["row"] == ANCHOR)["points"]
    compact = next((r["points"] for r in rows if r["classifier"] == name and
                    r["row"] == COMPACT_ANCHOR), None)
    clean = result["clean"][name]
    entry = table.setdefault(name, {})
    for title in dict.fromkeys(r["row"] for r in rows if r["classifier"] == name):
      if title == ANCHOR:
        continue
      runs = [r for r in rows if r["classifier"] == name and r["row"] == title]
      out = {"bd": {}, "budget": {}, "seeds": len(runs)}
      if compact is not None and title != COMPACT_ANCHOR:
        # The tables' own saving: against libjpeg-turbo's coefficients in the same headers.
        out["bd"]["bpp_compact"] = _stats([bd_rate(compact, r["points"]) for r in runs])
      for axis in ("bpp", "payload_bpp"):
        out["bd"][axis] = _stats([bd_rate(anchor, r["points"], axis) for r in runs])
        for b in BUDGETS:
          base = rate_at(anchor, clean - b / 100, axis)
          savings = [None if base is None or rate_at(r["points"], clean - b / 100, axis) is None
                     else rate_at(r["points"], clean - b / 100, axis) / base - 1 for r in runs]
          out["budget"].setdefault(str(b), {})[axis] = _stats(savings)
      entry[title] = out
  return table


def _cell(stats) -> str:
  if stats is None:
    return "n/a"
  m, s, k = stats
  return f"{100 * m:+.1f}%" + (f" ± {100 * s:.1f}" if k > 1 else "")


def markdown(result: dict, table: dict) -> str:
  lines = []
  for name, entry in table.items():
    lines.append(f"\n**{name}** classifier (clean accuracy {100 * result['clean'][name]:.2f}%), "
                 f"bits saved against {ANCHOR} with the same classifier:\n")
    with_compact = any("bpp_compact" in out["bd"] for out in entry.values())
    lines.append("| row | seeds | BD-rate (file) | BD-rate (data) | at -1 pt (file) | "
                 "at -1 pt (data) | at -3 pt (file) | at -3 pt (data) |"
                 + (" BD-rate (file) against libjpeg-turbo's coefficients, compact |"
                    if with_compact else ""))
    lines.append("|---" * (9 if with_compact else 8) + "|")
    for title, out in entry.items():
      cells = [_cell(out["bd"]["bpp"]), _cell(out["bd"]["payload_bpp"])]
      for b in BUDGETS:
        cells += [_cell(out["budget"][str(b)]["bpp"]), _cell(out["budget"][str(b)]["payload_bpp"])]
      if with_compact:
        cells.append(_cell(out["bd"].get("bpp_compact")))
      lines.append(f"| {title} | {out['seeds']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def checks(table: dict) -> list[str]:
  """The acceptance targets per classifier, as PASS/FAIL lines (means over seeds)."""
  lines = []
  for name, entry in table.items():
    for axis, label in (("bpp", "whole file"), ("payload_bpp", "entropy-coded data")):
      task = {t: o["bd"][axis] for t, o in entry.items() if t.startswith("task") and
              "ablation" not in t and o["bd"][axis] is not None}
      psnr = {t: o["bd"][axis] for t, o in entry.items() if t in PSNR_ROWS and
              o["bd"][axis] is not None}
      if not task:
        continue
      best = min(task, key=lambda t: task[t][0])
      value = task[best][0]
      lines.append(f"{'PASS' if value <= -0.5 else 'FAIL'}  [{name}, {label}] best task row "
                   f"{best!r}: BD-rate {100 * value:+.1f}% (target -50% or better)")
      if psnr:
        rival = min(psnr, key=lambda t: psnr[t][0])
        gap = 100 * (value - psnr[rival][0])
        lines.append(f"{'PASS' if gap <= -15 else 'FAIL'}  [{name}, {label}] {gap:+.1f} points "
                     f"against {rival!r} ({100 * psnr[rival][0]:+.1f}%; target -15 or better)")
    own = {t: o["bd"]["bpp_compact"] for t, o in entry.items() if t.startswith("task") and
           "ablation" not in t and o["bd"].get("bpp_compact") is not None}
    if own:
      best = min(own, key=lambda t: own[t][0])
      lines.append(f"INFO  [{name}, whole file] best task row against libjpeg-turbo's "
                   f"coefficients in the same compact headers {best!r}: "
                   f"{100 * own[best][0]:+.1f}% (what the tables save)")
  return lines


def plot(result: dict, path: str, axis: str = "bpp") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(dict.fromkeys(r["classifier"] for r in result["rows"]))
  fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
  for ax, name in zip(axes[0], names):
    colours = {}
    for r in result["rows"]:
      if r["classifier"] != name:
        continue
      pts = sorted(r["points"], key=lambda p: p[axis])
      colour = colours.get(r["row"])
      line, = ax.plot([p[axis] for p in pts], [100 * p["accuracy"] for p in pts],
                      "o-" if r["row"] == ANCHOR else ".-", ms=3, lw=1, color=colour,
                      label=None if colour else r["row"], alpha=0.9)
      colours[r["row"]] = line.get_color()
    ax.axhline(100 * result["clean"][name], ls=":", color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (" + ("whole file" if axis == "bpp" else
                                        "entropy-coded data") + ")")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{name} classifier (dotted: clean)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def evaluate_main(args) -> int:
  os.makedirs(args.out, exist_ok=True)
  result = evaluate_runs(args)
  table = summarize(result)
  result["summary"] = table
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(result, f, indent=1)
  for axis in ("bpp", "payload_bpp"):
    plot(result, os.path.join(args.out, f"accuracy_{axis}.png"), axis)
  print(markdown(result, table))
  print()
  for line in checks(table):
    print(line)
  print(f"\n{result['test_images']} test images, {result['seconds']:.0f} s; results in {args.out}")
  return 0


# -------------------------------------------------------------------------------- training


def pack_data(args) -> int:
  """`<data>/train` as one uint8 .npz (images, labels, class names) for the GPU machine."""
  from djpeg.train import task_tables

  split = task_tables.load_split(args.data, "train")
  index = np.arange(len(split.labels))
  if args.per_class:
    index = np.concatenate([np.flatnonzero(split.labels == c)[:args.per_class]
                            for c in range(len(split.classes))])
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  np.savez_compressed(args.out, images=split.images[index], labels=split.labels[index],
                      classes=np.asarray(split.classes))
  print(f"{args.out}: {len(index)} images, {os.path.getsize(args.out) / 2 ** 20:.1f} MiB")
  return 0


def unpack_data(args) -> int:
  """The .npz back to `<out>/train/<class>/<i>.png` (and an empty `<out>/test/<class>/`)."""
  from PIL import Image

  with np.load(args.npz) as stored:
    images, labels, classes = stored["images"], stored["labels"], list(stored["classes"])
  for name in classes:
    os.makedirs(os.path.join(args.out, "train", str(name)), exist_ok=True)
    os.makedirs(os.path.join(args.out, "test", str(name)), exist_ok=True)
  for i, (image, label) in enumerate(zip(images, labels)):
    Image.fromarray(image).save(os.path.join(args.out, "train", str(classes[label]),
                                             f"{i:05d}.png"), compress_level=1)
  print(f"{args.out}/train: {len(labels)} images in {len(classes)} classes")
  return 0


def train_classifier(args) -> int:
  """`djpeg-train consistency` on `<data>/train` (no test evaluation), saved as
  `<runs>/classifiers/<name>.npz`."""
  from djpeg.train import consistency, task_tables

  method = args.method
  cfg = consistency.Config(
      method=method, data=args.data, out=os.path.join(args.work, f"classifier-{args.name}"),
      epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
      quality_block=1 if method == "consistency" else None, checkpoint_every=10 ** 6,
      log_every=50)
  t0 = time.time()
  run = consistency.train(cfg)
  classifier = task_tables.Classifier(
      task_tables.network_of(cfg, run.graphdef, run.state.params, run.state.rest), cfg,
      tuple(run.stream.classes), f"{args.name} ({method}, {args.epochs:g} epochs)")
  os.makedirs(os.path.join(args.runs, "classifiers"), exist_ok=True)
  task_tables.save_classifier(os.path.join(args.runs, "classifiers", f"{args.name}.npz"),
                              classifier)
  print(f"[{args.name}] trained in {time.time() - t0:.0f} s ({run.num_steps} steps)", flush=True)
  return 0


def import_classifier(args) -> int:
  """A `djpeg-train consistency` run folder's classifier as `<runs>/classifiers/<name>.npz`."""
  from djpeg.train import task_tables

  classifier = task_tables.load_classifier(args.run)
  os.makedirs(os.path.join(args.runs, "classifiers"), exist_ok=True)
  task_tables.save_classifier(os.path.join(args.runs, "classifiers", f"{args.name}.npz"),
                              classifier)
  return 0


def train_tables(args) -> int:
  """`djpeg-train task-tables <kind>` for each seed, in one process (one compilation), into
  `<runs>/tables/<classifier>/<kind>-s<seed>` (alternate: `<runs>/tables/alternate-s<seed>`)."""
  from djpeg.train import task_tables

  path = os.path.join(args.runs, "classifiers", f"{args.classifier}.npz")
  if args.one_table and args.kind not in ("family", "alternate"):
    sys.exit("--one-table goes with --kind family or alternate.")
  for seed in (int(s) for s in args.seeds.split(",")):
    one = "onetable" if args.one_table else ""
    folder = (f"alternate{'-' + one if one else ''}-s{seed}" if args.kind == "alternate"
              else os.path.join(args.classifier, f"{one or args.kind}-s{seed}"))
    out = os.path.join(args.runs, "tables", folder)
    work = os.path.join(args.work, "tables", folder)
    cfg = task_tables.Config(kind=args.kind, classifier=path, data=args.data, out=work,
                             steps=args.steps, batch=args.batch, seed=seed, task=args.task,
                             eval_every=args.eval_every, checkpoint_every=10 ** 6,
                             time_limit=args.time_limit, rounds=args.rounds,
                             surrogate=args.surrogate, learning_rate=args.learning_rate,
                             one_table=args.one_table)
    task_tables.run(cfg)
    os.makedirs(out, exist_ok=True)
    for name in ("family.json", "task_net.npz", "task_net.json", "classifier.npz",
                 "summary.json", "validation.csv"):
      if os.path.exists(os.path.join(work, name)):
        shutil.copy(os.path.join(work, name), os.path.join(out, name))
  return 0


def pack(args) -> int:
  """The runs folder (exports only) as one tar file."""
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with tarfile.open(args.out, "w") as tar:
    tar.add(args.runs, arcname="runs")
  print(f"{args.out}: {os.path.getsize(args.out) / 2 ** 20:.1f} MiB")
  return 0


def trellis_check(args) -> int:
  """The trellis rows' diagnosis (module docstring)."""
  import jax.numpy as jnp

  from djpeg import roi
  from djpeg.train import task_tables as tt

  classifier = tt.load_classifier(os.path.join(args.runs, "classifiers",
                                               f"{args.classifier}.npz"))
  split = tt.load_split(args.data, "train")
  index = np.random.default_rng(7).permutation(len(split.labels))[:args.images]
  pixels, labels = split.images[index], split.labels[index]
  net, record = tt.load_task_net(os.path.join(args.runs, "tables", args.classifier,
                                              f"block-s{args.seed}"))
  scorer = Scorer({args.classifier: classifier}, labels)
  images = jnp.asarray(pixels.astype(np.float32) / 255.0)
  print(f"{len(labels)} training images of {args.data}; classifier {args.classifier}, block "
        f"network seed {args.seed}")
  for lam in (float(x) for x in args.lambdas.split(",")):
    tables = tt.predict_task_tables(net, images, lam)
    maps = np.asarray(roi.pixel_map(tt.sensitivity_maps(
        classifier.network, images, jnp.asarray(tables), task=record["task"],
        layers=tuple(record["layers"])), *pixels.shape[1:3]))
    settings = [("no trellis", lambda: djpeg_files(pixels, tables)),
                ("uniform trellis", lambda: trellis_files(pixels, tables))]
    settings += [(f"weighted, background {bg:g}",
                  lambda bg=bg: trellis_files(pixels, tables, maps, bg))
                 for bg in (float(x) for x in args.backgrounds.split(","))]
    for name, make in settings:
      point = _point(make(), scorer, [args.classifier], lam)
      print(f"  lambda {lam:g}, {name}: {point['bpp']:.3f} bpp ({point['payload_bpp']:.3f} "
            f"data), accuracy {100 * point['accuracy'][args.classifier]:.1f}%", flush=True)
  return 0


@functools.cache
def _gradient_programs():
  """(gradient, softmax), jitted once for the process, the network an argument (a pytree):
  the gradient of the cross-entropy with respect to the quantized coefficients through the float
  decode (against labels, or, where a label is -1, the soft targets), and the network's softmax
  on clean images."""
  import jax
  import jax.numpy as jnp

  import djpeg
  from djpeg.coefficients import Coefficients

  def loss(quantized, network, steps, labels, quality, soft, geometry):
    decoded = djpeg.decode(Coefficients(tuple(quantized), steps, *geometry), faithful=False)
    log_p = jax.nn.log_softmax(network(decoded, quality)[0])
    hard = -jnp.take_along_axis(log_p, jnp.maximum(labels, 0)[:, None], 1)[:, 0]
    return jnp.where(labels >= 0, hard, -(soft * log_p).sum(-1)).sum()

  def softmax(network, x):
    return jax.nn.softmax(network(x, jnp.full((x.shape[0],), 100.0))[0])

  return jax.jit(jax.grad(loss), static_argnums=6), jax.jit(softmax)


def _coefficient_gradients(network, pixels, tables, labels=None, batch: int = 500):
  """Per component `(N, rows, cols, 8, 8)`: the gradient of the classifier's cross-entropy
  with respect to each DCT coefficient (orthonormal units) of the JPEG of `pixels` at `tables`
  `(3, 8, 8)`, through the float decode; against `labels`, or (None) against the classifier's
  own softmax on the clean image (label-free)."""
  import jax.numpy as jnp

  import djpeg
  from djpeg.train import task_tables as tt

  grad, softmax = _gradient_programs()
  out = [[], [], []]
  for lo in range(0, len(pixels), batch):
    images = jnp.asarray(pixels[lo:lo + batch].astype(np.float32) / 255.0)
    n = images.shape[0]
    steps = jnp.broadcast_to(jnp.asarray(tables, jnp.float32), (n, 3, 8, 8))
    coded = djpeg.encode(images, tables=steps, subsampling="4:2:0")
    lab = (jnp.full((n,), -1, jnp.int32) if labels is None
           else jnp.asarray(labels[lo:lo + batch], jnp.int32))
    g = grad(tuple(coded.components), network, steps, lab, tt.file_quality(steps),
             softmax(network, images), (coded.height, coded.width, coded.sampling))
    for c in range(3):     # d/dX = d/dq / step
      out[c].append(np.asarray(g[c] / steps[:, c, None, None]))
  return [np.concatenate(o) for o in out]


def _unit_sum(weights):
  total = sum(float(np.sum(w)) for w in weights)
  return [np.asarray(w, np.float64) * (192.0 / total) for w in weights]


def sensitivity_trellis(args) -> int:
  """The trellis with the classifier's sensitivity as its distortion (module docstring)."""
  import djpeg
  from djpeg.encoder import TrellisImage
  from djpeg.train import task_tables as tt

  classifier = tt.load_classifier(os.path.join(args.runs, "classifiers",
                                               f"{args.classifier}.npz"))
  split = tt.load_split(args.data, "train")
  order = np.random.default_rng(11).permutation(len(split.labels))
  fit = order[:args.fit_images]
  held = order[args.fit_images:args.fit_images + args.images]
  pixels, labels = split.images[held], split.labels[held]
  shipped = djpeg.tables.load_table_family("learned")["tables"]
  network = classifier.network
  scorer = Scorer({args.classifier: classifier}, labels)
  print(f"{args.fit_images} training images for the sensitivities, {len(labels)} other "
        f"training images scored; classifier {args.classifier}; the shipped PSNR family, luma's "
        "table for all components", flush=True)

  def trellis_files_weighted(tables, weights_of, blocks_of=None):
    out = []
    for i, px in enumerate(pixels):
      image = TrellisImage(px.astype(np.float32) / 255.0, "4:2:0", pixels=px)
      if weights_of is not None:
        image.weights = weights_of(i)
      if blocks_of is not None:
        image.blocks = blocks_of(i)
      result = image.trellis(tables, image.slope(tables), 2)
      out.append(djpeg.dumps(image.coefficients(tables, result), **_headers))
    return out

  rows = {name: [] for name in ("no trellis", "MSE trellis", "frequency weights",
                                "per-image frequency weights", "frequency and block weights")}
  for level in (int(x) for x in args.levels.split(",")):
    tables = np.asarray(shipped[level - 1])[[0, 0, 0]]
    g_fit = _coefficient_gradients(network, split.images[fit], tables, split.labels[fit])
    dataset = _unit_sum([np.mean(g ** 2, axis=(0, 1, 2)) for g in g_fit])
    g = _coefficient_gradients(network, pixels, tables)          # label-free, per image

    def per_image(i):
      own = _unit_sum([np.mean(gc[i] ** 2, axis=(0, 1)) for gc in g])
      return [0.5 * a + 0.5 * b for a, b in zip(own, dataset)]

    def blocks(i):
      energy = [(gc[i] ** 2).sum((-2, -1)) for gc in g]
      return [0.5 + 0.5 * e / max(float(e.mean()), 1e-30) for e in energy]

    makers = {"no trellis": lambda: djpeg_files(pixels, tables),
              "MSE trellis": lambda: trellis_files_weighted(tables, None),
              "frequency weights": lambda: trellis_files_weighted(tables, lambda i: dataset),
              "per-image frequency weights": lambda: trellis_files_weighted(tables, per_image),
              "frequency and block weights": lambda: trellis_files_weighted(
                  tables, lambda i: dataset, blocks)}
    for name, make in makers.items():
      point = _point(make(), scorer, [args.classifier], level)
      rows[name].append({**point, "accuracy": point["accuracy"][args.classifier]})
      print(f"  level {level}, {name}: {point['bpp']:.3f} bpp, accuracy "
            f"{100 * rows[name][-1]['accuracy']:.1f}%", flush=True)
  for name, points in list(rows.items())[1:]:
    r = bd_rate(rows["no trellis"], points)
    print(f"BD-rate against no trellis, {name}: " + ("no overlap" if r is None else
                                                     f"{100 * r:+.1f}%"))
  return 0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="command", required=True)
  e = sub.add_parser("evaluate", help="accuracy against bits per pixel on the test split")
  e.add_argument("--runs", required=True, help="runs folder or .tar (bench/task_tables_gpu.sh)")
  e.add_argument("--data", default=CIFAR)
  e.add_argument("--out", default=os.path.join(REPO, "bench", "out", "task_tables"))
  e.add_argument("--limit", type=int, default=None, help="test images (default: all)")
  e.add_argument("--skip-optimize", action="store_true",
                 help="leave out per-image optimize_tables (42 ms per image and point on 2 cores)")
  e.add_argument("--all-ablations", action="store_true",
                 help="the uniform-trellis ablation for every seed (default: seed 0)")
  e.add_argument("--headers", choices=tuple(HEADERS), default="compact",
                 help="how djpeg's rows are written (default: compact headers, no JFIF)")
  e.set_defaults(fn=evaluate_main)
  d = sub.add_parser("pack-data", help="<data>/train as one uint8 .npz")
  d.add_argument("--data", default=CIFAR)
  d.add_argument("--out", required=True)
  d.add_argument("--per-class", type=int, default=None, help="first N images of each class")
  d.set_defaults(fn=pack_data)
  u = sub.add_parser("unpack-data", help="the .npz back to an image folder")
  u.add_argument("--npz", required=True)
  u.add_argument("--out", required=True)
  u.set_defaults(fn=unpack_data)
  c = sub.add_parser("train-classifier", help="a classifier into <runs>/classifiers/<name>.npz")
  c.add_argument("--method", choices=("plain", "consistency"), required=True)
  c.add_argument("--name", default=None, help="default: the method")
  c.add_argument("--data", required=True)
  c.add_argument("--runs", required=True)
  c.add_argument("--work", required=True, help="scratch folder for checkpoints")
  c.add_argument("--epochs", type=float, default=8.0)
  c.add_argument("--batch-size", type=int, default=128)
  c.add_argument("--seed", type=int, default=0)
  c.set_defaults(fn=train_classifier)
  i = sub.add_parser("import-classifier", help="a consistency run's classifier into <runs>")
  i.add_argument("--run", required=True, help="a djpeg-train consistency run folder")
  i.add_argument("--name", required=True)
  i.add_argument("--runs", required=True)
  i.set_defaults(fn=import_classifier)
  t = sub.add_parser("train-tables", help="task tables for one classifier, several seeds")
  t.add_argument("--classifier", required=True, help="name under <runs>/classifiers")
  t.add_argument("--kind", choices=("family", "net", "block", "alternate"), required=True)
  t.add_argument("--seeds", default="0,1,2")
  t.add_argument("--data", required=True)
  t.add_argument("--runs", required=True)
  t.add_argument("--work", required=True, help="scratch folder for checkpoints")
  t.add_argument("--task", choices=("ce", "features"), default="ce")
  t.add_argument("--steps", type=int, default=600)
  t.add_argument("--batch", type=int, default=64)
  t.add_argument("--eval-every", type=int, default=100)
  t.add_argument("--rounds", type=int, default=3)
  t.add_argument("--surrogate", choices=("ste", "noise"), default="ste")
  t.add_argument("--learning-rate", type=float, default=None)
  t.add_argument("--time-limit", type=float, default=None, help="seconds per seed")
  t.add_argument("--one-table", action="store_true",
                 help="family, alternate: one table for all components (into onetable-s<seed>, "
                      "alternate-onetable-s<seed>)")
  t.set_defaults(fn=train_tables)
  r = sub.add_parser("trellis-check", help="the trellis rows' diagnosis on training images")
  r.add_argument("--runs", required=True)
  r.add_argument("--data", default=CIFAR)
  r.add_argument("--classifier", default="plain")
  r.add_argument("--seed", type=int, default=0)
  r.add_argument("--images", type=int, default=400)
  r.add_argument("--lambdas", default="2,10,50")
  r.add_argument("--backgrounds", default="0.01,0.1,0.3")
  r.set_defaults(fn=trellis_check)
  w = sub.add_parser("sensitivity-trellis",
                     help="the trellis with the classifier's sensitivity as its distortion")
  w.add_argument("--runs", required=True)
  w.add_argument("--data", default=CIFAR)
  w.add_argument("--classifier", default="plain")
  w.add_argument("--images", type=int, default=1500)
  w.add_argument("--fit-images", type=int, default=2000)
  w.add_argument("--levels", default="1,3,5,7,9,11")
  w.set_defaults(fn=sensitivity_trellis)
  k = sub.add_parser("pack", help="the runs folder as one .tar")
  k.add_argument("--runs", required=True)
  k.add_argument("--out", required=True)
  k.set_defaults(fn=pack)
  args = p.parse_args(argv)
  if getattr(args, "name", "") is None:
    args.name = args.method
  return args.fn(args)


if __name__ == "__main__":
  sys.exit(main())
