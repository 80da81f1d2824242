"""Many images at once: the batch mode of `djpeg-cli encode`, and the compilation cache.

`plan` turns inputs (files, folders searched recursively, glob patterns) and an output folder
into (source, destination) jobs: the output tree mirrors each input folder, every output is a
`.jpg`, two inputs that would write the same output are refused before anything is written, and
`shard` keeps the I-th of N slices (`--shard I/N`, for Slurm arrays or Kubernetes indexed jobs).
`run` exports the jobs in worker processes, each keeping its compiled functions warm and
single-threaded (one process per core scales better than one process on many threads). In the
default and libjpeg modes on Linux the workers are forked from this process after it has
exported a small image itself (`warm_up`): they start with djpeg imported and its compiled loops
loaded (about 2 s of each worker's start) instead of importing everything again; those modes
run no XLA program, and forking is safe only while no XLA runtime (and its threads) exists,
which is checked. Other modes, other systems, or a process that has started XLA spawn fresh
workers. `run` shows
a progress bar (tqdm) with images per second and bytes saved, and returns one `Outcome` per
job: a bad file is reported with its reason and the others go on. Outputs are written
atomically, so an interrupted run leaves no partial file.

`enable_compilation_cache` turns on JAX's persistent compilation cache in a user cache folder
($DJPEG_CACHE_DIR, else $XDG_CACHE_HOME/djpeg/jax, else ~/.cache/djpeg/jax), so a second run over
images of the same sizes compiles nothing. `reuse_freed_memory` (`djpeg.memory`) keeps the
process's freed memory for reuse. The CLI and the workers call both; the API can too.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import io
import multiprocessing
import os
import signal
import sys
import threading

import jax
import numpy as np
from tqdm import tqdm

from djpeg.exact import JPEGError
from djpeg.memory import reuse_freed_memory  # noqa: F401 (batch's API: what the CLI turns on)
from djpeg.export import ExportOptions, ExportResult, export_bytes, export_file

#: Extensions of the image files a folder search picks up (any case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".jif", ".tif", ".tiff", ".bmp",
                    ".webp", ".gif", ".ppm", ".pgm", ".pnm")


def cache_dir() -> str:
  """The persistent compilation cache folder (module docstring)."""
  if os.environ.get("DJPEG_CACHE_DIR"):
    return os.environ["DJPEG_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "djpeg", "jax")


def enable_compilation_cache(path: str | None = None) -> str:
  """Turns on JAX's persistent compilation cache at `path` (default `cache_dir()`), keeping
  every compiled program however quick it was to compile; returns the folder. Call it before
  the first compilation."""
  path = path or cache_dir()
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  return path


def loops_compiled(mode: str = "perceptual") -> bool | None:
  """Whether numba's on-disk cache already holds the compiled loops `mode` runs ("perceptual":
  the default mode; "libjpeg"), judged by two of them (the quantizing DCT and SSIMULACRA 2's
  blur); None where numba's cache cannot be inspected. False before the first run after
  installing, which compiles them once (`compile_loops`: about 20 s for the default mode on
  2 cores)."""
  from djpeg import butteraugli, encode_compiled, recursive_gaussian
  sentinels = [encode_compiled.quantize_dct]
  if mode == "perceptual":
    sentinels += [recursive_gaussian.blur_moments, butteraugli._block_diff_map]
  try:
    return all(os.path.exists(f._cache._cache_file._index_path) for f in sentinels)
  except AttributeError:                   # another numba's cache internals: no answer
    return None


@dataclasses.dataclass(frozen=True)
class Outcome:
  """One job's end: its result, or why it failed, or that it was skipped."""
  source: str
  destination: str
  result: ExportResult | None = None
  error: str | None = None
  skipped: bool = False


def _expand(item: str, output_dir: str | None = None) -> list[tuple[str, str]]:
  """(file, path relative to the output folder) for one input argument. A folder search leaves
  out `output_dir` (an output folder inside an input folder: a rerun would otherwise encode the
  last run's outputs again)."""
  if os.path.isdir(item):
    found, skip = [], os.path.realpath(output_dir) if output_dir else None
    for root, dirs, names in os.walk(item):
      dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip)
      for name in names:
        path = os.path.join(root, name)
        # Regular files only (symbolic links to them too): a named pipe would be read forever.
        if (name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
            and os.path.isfile(path)):
          found.append((path, os.path.relpath(path, item)))
    if not found:
      raise ValueError(f"{item!r}: a folder with no image files (by their names: "
                       f"{', '.join(IMAGE_EXTENSIONS)}).")
    return sorted(found)
  if os.path.exists(item):
    return [(item, os.path.basename(item))]
  matches = sorted(glob.glob(item, recursive=True))
  if not matches:
    raise ValueError(f"{item!r}: no such file or folder, and no file matches it as a pattern.")
  base = os.path.dirname(item.split("*")[0].split("?")[0].split("[")[0]) or "."
  return [(m, os.path.relpath(m, base)) for m in matches if os.path.isfile(m)]


def plan(inputs: list[str], output_dir: str) -> list[tuple[str, str]]:
  """(source, destination) jobs for `inputs` written under `output_dir` (module docstring).

  Raises:
    ValueError: an input that names nothing, or two inputs that would write one output.
  """
  jobs, seen, clashes = [], {}, []
  for item in inputs:
    for source, relative in _expand(item, output_dir):
      destination = os.path.join(output_dir, os.path.splitext(relative)[0] + ".jpg")
      key = os.path.normcase(os.path.abspath(destination))
      if key in seen and os.path.abspath(seen[key]) != os.path.abspath(source):
        clashes.append(f"{seen[key]!r} and {source!r} would both be written to {destination!r}")
      if key not in seen:
        seen[key] = source
        jobs.append((source, destination))
  if clashes:       # all of them at once, not one per run
    more = f" (and {len(clashes) - 10} more)" if len(clashes) > 10 else ""
    raise ValueError("; ".join(clashes[:10]) + more + "; rename them or export them separately.")
  return jobs


def shard(jobs: list, spec: str | None) -> list:
  """The I-th of N interleaved slices of `jobs` for `spec` "I/N" (0 <= I < N); all for None."""
  if spec is None:
    return jobs
  try:
    index, count = (int(x) for x in spec.split("/"))
  except ValueError:
    raise ValueError(f"--shard takes I/N with 0 <= I < N; got {spec!r}.") from None
  if not 0 <= index < count:
    raise ValueError(f"--shard takes I/N with 0 <= I < N; got {spec!r}.")
  return jobs[index::count]


def _export(source: str, destination: str, options: ExportOptions) -> Outcome:
  try:
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    return Outcome(source, destination, result=export_file(source, destination, options,
                                                           measure=False))
  except (ValueError, JPEGError, OSError, NotImplementedError) as e:
    return Outcome(source, destination, error=str(e))


def _size(path: str) -> int:
  try:
    return os.path.getsize(path)
  except OSError:                 # reported by the job itself
    return 0


def _init_worker(cache: str | None) -> None:
  _leave_interrupts_to_parent()
  _end_with_parent()
  reuse_freed_memory()
  if cache:
    enable_compilation_cache(cache)


def _leave_interrupts_to_parent() -> None:
  """A worker ignores Ctrl-C and SIGTERM, which reach the whole process group (a terminal,
  `timeout`, Slurm, systemd): the parent cancels the jobs not started, the workers finish the
  files they are writing, and the run ends. Interrupted themselves, workers printed tracebacks,
  and one interrupted while taking a job could die holding the pool's queue, so that the
  others, and the parent waiting for them, never ended."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _end_with_parent() -> None:
  """On Linux, asks the kernel to end this worker when its parent dies (PR_SET_PDEATHSIG): a
  killed parent must not leave workers encoding on, or idle, forever. SIGKILL, since workers
  ignore SIGTERM (`_leave_interrupts_to_parent`)."""
  if sys.platform.startswith("linux"):
    try:
      import ctypes
      ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
      pass


def run(jobs: list[tuple[str, str]], options: ExportOptions, *, processes: int = 1,
        skip_existing: bool = False, cache: str | None = None, progress: bool = True,
        stream=None) -> list[Outcome]:
  """Exports `jobs` with `processes` worker processes (1: in this process).

  Returns one `Outcome` per job, in the jobs' order. An interrupt (Ctrl-C, or SIGTERM to this
  process) cancels the jobs not started, waits for the workers to end and raises
  KeyboardInterrupt; no partial file is left behind (writes are atomic). With `progress`, a bar
  (on a terminal) and a line for each failed file and each note.
  """
  stream = stream or sys.stderr
  outcomes: dict[int, Outcome] = {}
  todo = []
  for i, (source, destination) in enumerate(jobs):
    if skip_existing and os.path.exists(destination):
      outcomes[i] = Outcome(source, destination, skipped=True)
    else:
      todo.append(i)
  # disable=None: no bar when the stream is not a terminal (a log would fill with redraws).
  bar = tqdm(total=len(todo), unit="image", disable=None if progress else True, file=stream,
             dynamic_ncols=True)
  saved = [0, 0]

  def finish(i: int, outcome: Outcome) -> None:
    outcomes[i] = outcome
    if outcome.result is not None:
      saved[0] += outcome.result.input_bytes
      saved[1] += outcome.result.output_bytes
      for note in outcome.result.notes if progress else ():
        bar.write(f"djpeg-cli: {outcome.source}: note: {note}", file=stream)
    elif progress:         # quiet: the caller reports failures
      bar.write(f"djpeg-cli: {outcome.source}: {outcome.error}", file=stream)
    if saved[0]:
      bar.set_postfix_str(f"saved {(saved[0] - saved[1]) / 2 ** 20:.1f} MB "
                          f"({100 * (1 - saved[1] / saved[0]):.0f}%)")
    bar.update(1)

  try:
    if processes <= 1 or len(todo) <= 1:
      if cache:
        enable_compilation_cache(cache)
      for i in todo:
        finish(i, _export(*jobs[i], options))
    else:
      _run_pool(jobs, todo, options, processes, cache, finish)
  finally:
    bar.close()
  return [outcomes[i] for i in range(len(jobs))]


#: The modes whose export runs no XLA program (compiled loops and numpy only): their workers
#: can be forked from a warmed-up parent.
XLA_FREE_MODES = ("perceptual", "libjpeg")


def _warm_up_pixels() -> np.ndarray:
  """A small synthetic photo-like image, `(64, 96, 3)` uint8."""
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:64, 0:96]
  return np.clip(np.stack([x * 2.5, y * 3.5, (x + y) * 1.5], -1)
                 + rng.normal(0, 12, (64, 96, 3)), 0, 255).astype(np.uint8)


def warm_up(options: ExportOptions) -> None:
  """Exports a small synthetic image (a PNG and a JPEG of 96x64 pixels) in memory with
  `options`, so that this process has loaded every compiled loop the export uses."""
  from PIL import Image
  for kind in ("PNG", "JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(_warm_up_pixels()).save(buffer, kind)
    export_bytes(buffer.getvalue(), options, measure=False)


# The parts of an export's compiled loops that `compile_loops` compiles side by side: each runs
# a share of `warm_up`'s loops (few of them in two parts) on the same kinds of arrays, so with
# the same signatures, and numba writes what it compiles to its on-disk cache, where every later
# process finds it.
def _compile_anchor() -> None:
  """libjpeg-turbo's coefficients and their exact decode (colour conversion, quantizing DCT,
  IDCT, upsampling)."""
  from djpeg import codec
  codec.decode_samples(codec.encode_pixels(_warm_up_pixels(), quality=75))


def _compile_ssimulacra2() -> None:
  """SSIMULACRA 2 of 8-bit images (XYB, the recursive blur, the pooled error maps)."""
  from djpeg import ssimulacra2
  pixels = _warm_up_pixels()
  reference = ssimulacra2.ssimulacra2_reference(pixels)
  ssimulacra2.ssimulacra2_against(reference, np.ascontiguousarray(pixels[::-1]))


def _compile_butteraugli() -> None:
  """butteraugli's distance map (the default mode's second look at its choice)."""
  from djpeg import butteraugli
  pixels = _warm_up_pixels()
  butteraugli.butteraugli_diffmap(pixels, np.ascontiguousarray(pixels[::-1]))


def _compile_trellis() -> None:
  """The default mode's coding of a candidate (fitted chroma and luma, DCT, the trellis)."""
  from djpeg import perceptual
  perceptual.PerceptualImage(_warm_up_pixels()).trellis(75.0)


def _compile_writer() -> None:
  """The file writer: Huffman tables, baseline and progressive scans."""
  from djpeg.coefficients import Coefficients
  from djpeg.exact import write_coefficients
  rng = np.random.default_rng(0)
  components = tuple(rng.integers(-20, 21, shape + (8, 8)).astype(np.int16)
                     for shape in ((8, 12), (4, 6), (4, 6)))
  coefficients = Coefficients(components, np.full((3, 8, 8), 4, np.float32), 64, 96,
                              ((2, 2), (1, 1), (1, 1)))
  write_coefficients(coefficients, optimize=True, progressive="optimize")
  write_coefficients(coefficients, optimize=True)


def _compile_reader() -> None:
  """The coefficient reader, baseline and progressive."""
  from PIL import Image
  from djpeg.exact import read_coefficients
  for progressive in (False, True):
    buffer = io.BytesIO()
    Image.fromarray(_warm_up_pixels()).save(buffer, "JPEG", progressive=progressive)
    read_coefficients(buffer.getvalue())


#: Per mode, the parts `compile_loops` runs. Each alone in a new process on a 2-core machine:
#: about 9.5, 11, 13, 7 and 6 s (some loops are in two parts); all five side by side on 2 cores
#: about 20-25 s, in this order or longest first alike.
_COMPILE_PARTS = {
    "perceptual": (_compile_butteraugli, _compile_ssimulacra2, _compile_writer, _compile_trellis,
                   _compile_anchor, _compile_reader),
    "libjpeg": (_compile_writer, _compile_anchor, _compile_reader),
}


def _compile_part(part) -> None:
  try:
    part()
  except Exception:                   # noqa: BLE001 (whatever it missed, the export compiles)
    pass


def compile_loops(mode: str = "perceptual", processes: int | None = None) -> None:
  """Compiles the numba loops that `mode` ("perceptual", the default mode, or "libjpeg") runs in
  `processes` processes at once (default: one per core), into numba's on-disk cache.

  The first export after installing compiles them one after another in one process (about 38 s
  on 2 cores, most of it in LLVM); in parts side by side it takes about half that on 2 cores.
  Every process started later loads them from the cache. The CLI calls this when they are not
  there yet (`loops_compiled`); the API compiles them on first use, in its own process."""
  if mode not in _COMPILE_PARTS:
    raise ValueError(f"compile_loops: mode must be one of {tuple(_COMPILE_PARTS)}; got {mode!r} "
                     "(the other modes run XLA programs, which JAX compiles per image size).")
  parts = _COMPILE_PARTS[mode]
  processes = min(len(parts), processes or os.cpu_count() or 1)
  if processes <= 1:
    for part in parts:
      _compile_part(part)
    return
  fork = sys.platform.startswith("linux") and not _xla_started()
  context = multiprocessing.get_context("fork" if fork else "spawn")
  try:
    pool = concurrent.futures.ProcessPoolExecutor(processes, mp_context=context,
                                                  initializer=_die_on_interrupt)
  except (OSError, NotImplementedError):  # no processes here (no /dev/shm, say): the export
    return                                # compiles the loops as it reaches them
  with pool:
    try:
      for future in [pool.submit(_compile_part, part) for part in parts]:
        future.result()
    except BaseException as e:
      pool.shutdown(wait=True, cancel_futures=True)     # the parts not started are dropped
      # A part's process killed, or none could start: the export compiles the rest. Ctrl-C
      # goes on up.
      if not isinstance(e, (concurrent.futures.process.BrokenProcessPool, OSError)):
        raise


def _die_on_interrupt() -> None:
  # A compiling process ends at once on Ctrl-C (to the terminal's process group) rather than
  # when LLVM next returns to Python, and without a traceback: it holds nothing to clean up.
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def _xla_started() -> bool:
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):     # a JAX without the check: assume the worst
    return True


def _worker_context(options: ExportOptions):
  """fork after `warm_up` where that is safe (module docstring), else spawn."""
  spawn = multiprocessing.get_context("spawn")      # JAX's runtime is not fork-safe
  if (not sys.platform.startswith("linux") or options.mode not in XLA_FREE_MODES
      or _xla_started()):
    return spawn
  try:
    warm_up(options)
  except Exception:                   # noqa: BLE001 (the workers will report real problems)
    return spawn
  return spawn if _xla_started() else multiprocessing.get_context("fork")


def _run_pool(jobs, todo, options, processes, cache, finish) -> None:
  # Each worker runs XLA on one thread: `processes` single-threaded workers use the cores
  # better than as many multi-threaded ones fighting over them.
  saved_flags = os.environ.get("XLA_FLAGS")
  os.environ["XLA_FLAGS"] = ((saved_flags + " ") if saved_flags else "") + (
      "--xla_cpu_multi_thread_eigen=false")
  context = _worker_context(options)
  stop = _interrupt_on_sigterm()
  try:
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=processes, mp_context=context, initializer=_init_worker,
        initargs=(cache,)) as pool:
      # Largest files first: the last to finish are then small ones, and no worker waits
      # long for one big photo at the end of the run.
      order = sorted(todo, key=lambda i: -_size(jobs[i][0]))
      futures = {pool.submit(_export, *jobs[i], options): i for i in order}
      try:
        for future in concurrent.futures.as_completed(futures):
          finish(futures[future], future.result())
      except BaseException:
        # Cancel what has not started and wait for the rest: the pool's own exit would wait
        # for every job, since it resets the cancelling.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
  finally:
    stop()
    if saved_flags is None:
      os.environ.pop("XLA_FLAGS", None)
    else:
      os.environ["XLA_FLAGS"] = saved_flags


def _interrupt_on_sigterm():
  """Makes SIGTERM interrupt this process as Ctrl-C does (so the pool is shut down, not left
  running); returns the function that restores the previous handler."""
  if threading.current_thread() is not threading.main_thread():
    return lambda: None

  def interrupt(signum, frame):
    raise KeyboardInterrupt("SIGTERM")

  previous = signal.signal(signal.SIGTERM, interrupt)
  return lambda: signal.signal(signal.SIGTERM, previous)


def summary(outcomes: list[Outcome], seconds: float) -> str:
  """A table of what a run did: files, bytes in and out, saving, mean quality, throughput."""
  done = [o.result for o in outcomes if o.result is not None]
  failed = [o for o in outcomes if o.error is not None]
  skipped = [o for o in outcomes if o.skipped]
  lines = [f"{'files written':24s} {len(done)}", f"{'files failed':24s} {len(failed)}",
           f"{'files skipped':24s} {len(skipped)}"]
  if done:
    bytes_in = sum(r.input_bytes for r in done)
    bytes_out = sum(r.output_bytes for r in done)
    pixels = sum(r.width * r.height for r in done)
    lines += [f"{'input bytes':24s} {bytes_in:,}", f"{'output bytes':24s} {bytes_out:,}",
              f"{'saving':24s} {100 * (1 - bytes_out / max(bytes_in, 1)):.1f}%",
              f"{'bits per pixel':24s} {8 * bytes_out / pixels:.3f}"]
    scores = [r.ssimulacra2 for r in done if r.ssimulacra2 is not None]
    if scores:
      targets = [r.target_ssimulacra2 for r in done if r.target_ssimulacra2 is not None]
      lines.append(f"{'mean SSIMULACRA 2':24s} {sum(scores) / len(scores):.2f} "
                   f"(libjpeg-turbo at the quality: {sum(targets) / len(targets):.2f})")
    lines.append(f"{'time':24s} {seconds:.1f} s ({len(done) / max(seconds, 1e-9):.2f} images/s, "
                 f"{pixels / 1e6 / max(seconds, 1e-9):.3f} MP/s)")
  return "\n".join(lines)
