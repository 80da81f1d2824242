"""Folders of images: the batch CLI, compilation counts per size class, interruption, Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from djpeg import batch, cli, samples
from djpeg.export import ExportOptions, export_file
from conftest import pillow_decode


def make_library(root, sizes=((128, 192), (75, 97), (40, 33))):
  """A small library: PNG and JPEG inputs of several sizes, in a nested tree."""
  photo = samples.load("houses", uint8=True)
  (root / "trip" / "day1").mkdir(parents=True)
  paths = []
  for i, (h, w) in enumerate(sizes):
    pixels = np.asarray(Image.fromarray(photo).resize((w, h)))
    path = root / ("trip" if i % 2 else "trip/day1") / f"img{i}.{'png' if i % 2 else 'jpg'}"
    Image.fromarray(pixels).save(path, quality=95) if path.suffix == ".jpg" else \
        Image.fromarray(pixels).save(path)
    paths.append(path)
  return paths


def test_a_folder_with_a_corrupt_file(tmp_path, capsys):
  make_library(tmp_path / "in")
  (tmp_path / "in" / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
  code = cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--jobs", "1",
                   "--libjpeg"])
  assert code == 1
  err = capsys.readouterr()
  assert "broken.png" in err.err and "cannot be read" in err.err
  assert "files written            3" in err.out and "files failed             1" in err.out
  written = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out")
                   for d, _, fs in os.walk(tmp_path / "out") for f in fs)
  assert written == ["trip/day1/img0.jpg", "trip/day1/img2.jpg", "trip/img1.jpg"]
  for name in written:
    pillow_decode((tmp_path / "out" / name).read_bytes())
  # --skip-existing leaves them alone; a second run writes nothing new.
  before = {n: (tmp_path / "out" / n).stat().st_mtime_ns for n in written}
  assert cli.main(["encode", str(tmp_path / "in" / "trip" / "day1"), "-o",
                   str(tmp_path / "out" / "trip" / "day1"), "--skip-existing", "--quiet"]) == 0
  assert all((tmp_path / "out" / n).stat().st_mtime_ns == before[n] for n in written)


def test_an_animation_says_its_first_frame_is_encoded(tmp_path):
  photo = samples.load("houses", uint8=True)
  first, second = Image.fromarray(photo), Image.fromarray(photo[::-1].copy())
  first.save(tmp_path / "anim.gif", save_all=True, append_images=[second])
  Image.open(tmp_path / "anim.gif").convert("RGB").save(tmp_path / "first.png")
  result = export_file(tmp_path / "anim.gif", tmp_path / "anim.jpg")
  assert any("2 frames" in note and "first" in note for note in result.notes), result.notes
  export_file(tmp_path / "first.png", tmp_path / "first.jpg")
  assert (tmp_path / "anim.jpg").read_bytes() == (tmp_path / "first.jpg").read_bytes()


def test_a_frame_larger_than_jpeg_allows_is_refused_before_encoding(tmp_path, monkeypatch):
  Image.fromarray(np.zeros((8, 65536, 3), np.uint8)).save(tmp_path / "wide.png")
  monkeypatch.setattr("djpeg.export.encode_pixels_for", lambda *a: pytest.fail("encoded"))
  with pytest.raises(ValueError, match="65536x8 pixels; a JPEG frame is at most 65535"):
    export_file(tmp_path / "wide.png", tmp_path / "wide.jpg")
  assert not (tmp_path / "wide.jpg").exists()


def test_an_output_folder_named_like_a_jpeg_is_refused(tmp_path):
  source = tmp_path / "in.png"
  Image.fromarray(samples.load("houses", uint8=True)[:40, :56]).save(source)
  with pytest.raises(SystemExit, match="names a folder.*looks like a file name"):
    cli.main(["encode", str(source), "-o", str(tmp_path / "out.jpg"), "--libjpeg"])
  assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]     # nothing written
  # An existing folder of that name is still a folder.
  (tmp_path / "odd.jpg").mkdir()
  assert cli.main(["encode", str(source), "-o", str(tmp_path / "odd.jpg"), "--libjpeg",
                   "--quiet", "--jobs", "1"]) == 0
  assert Image.open(tmp_path / "odd.jpg" / "in.jpg").size == (56, 40)


def test_shards_split_the_library_and_outputs_never_overwrite_inputs(tmp_path):
  make_library(tmp_path / "in")
  jobs = batch.plan([str(tmp_path / "in")], str(tmp_path / "out"))
  parts = [batch.shard(jobs, f"{i}/2") for i in range(2)]
  assert sorted(parts[0] + parts[1]) == sorted(jobs) and not set(parts[0]) & set(parts[1])
  with pytest.raises(ValueError, match="I/N"):
    batch.shard(jobs, "2/2")
  source = tmp_path / "in" / "trip" / "img1.png"
  with pytest.raises(ValueError, match="the input itself"):
    export_file(source, source)
  (tmp_path / "x").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "x" / "img1.png")
  with pytest.raises(ValueError, match="would both be written"):
    batch.plan([str(source), str(tmp_path / "x" / "img1.png")], str(tmp_path / "out"))


def test_worker_processes_give_the_same_files(tmp_path):
  make_library(tmp_path / "in")
  assert cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "one"), "--jobs", "1",
                   "--quiet", "--no-cache"]) == 0
  assert cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "two"), "--jobs", "2",
                   "--quiet", "--no-cache"]) == 0
  for root, _, names in os.walk(tmp_path / "one"):
    for name in names:
      a = os.path.join(root, name)
      b = os.path.join(tmp_path / "two", os.path.relpath(a, tmp_path / "one"))
      assert open(a, "rb").read() == open(b, "rb").read(), name


def _ctrl_c_as_in_a_terminal() -> None:
  """For a child process (`preexec_fn`): SIGINT's default action, whatever this test run
  inherited. A test run started in the background of a non-interactive shell ignores SIGINT,
  its children inherit that, and Python then never turns Ctrl-C into KeyboardInterrupt: the
  child would finish its work instead of stopping."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_killed_run_leaves_no_partial_file(tmp_path):
  # A large image, a run killed while it works on it: no file, no temporary file left.
  big = np.asarray(Image.fromarray(samples.load("castle", uint8=True)).resize((1600, 1200)))
  (tmp_path / "in").mkdir()
  Image.fromarray(big).save(tmp_path / "in" / "big.png")
  proc = subprocess.Popen([sys.executable, "-m", "djpeg", "encode", str(tmp_path / "in"), "-o",
                           str(tmp_path / "out"), "--jobs", "1", "--no-cache", "--quiet"],
                          preexec_fn=_ctrl_c_as_in_a_terminal)
  time.sleep(8)
  proc.send_signal(signal.SIGINT)
  proc.wait(timeout=120)
  leftovers = [f for _, _, fs in os.walk(tmp_path / "out") for f in fs] \
      if (tmp_path / "out").exists() else []
  assert all(f == "big.jpg" for f in leftovers), leftovers        # finished or nothing
  assert not any(f.startswith(".djpeg-") for f in leftovers)
  for f in leftovers:
    pillow_decode((tmp_path / "out" / f).read_bytes())


def test_new_image_sizes_compile_nothing_new(tmp_path):
  # The libjpeg-identical export and the default mode, over several sizes in one process (the
  # 300x420 image is searched on a sample of tiles): no XLA program at all, counted by JAX's
  # own compile log, and no XLA runtime started (what lets the batch CLI fork its workers;
  # measure=False as the CLI calls it).
  # A jitted function at the end shows the counter counts.
  code = textwrap.dedent("""
      import logging, numpy as np
      from djpeg import encoder, files, samples
      count = []
      class Counter(logging.Handler):
        def emit(self, record):
          if "Compiling" in record.getMessage():
            count.append(1)
      logging.getLogger("jax._src.interpreters.pxla").addHandler(Counter())
      logging.getLogger("jax._src.interpreters.pxla").setLevel(logging.DEBUG)
      import jax
      from jax._src import xla_bridge
      jax.config.update("jax_log_compiles", True)
      photo = samples.load("houses", uint8=True)
      for h, w in ((64, 96), (100, 150), (120, 190), (128, 192), (37, 301)):
        files.dumps(photo[:h, :w], quality=75)
      for h, w in ((64, 96), (120, 190)):
        files.dumps(encoder.compress(photo[:h, :w], quality=70, measure=False).coefficients,
                    progressive="optimize")
      mosaic = np.tile(photo, (3, 3, 1))[:300, :420]
      encoder.compress(mosaic, quality=80, measure=False)
      print(len(count), int(xla_bridge.backends_are_initialized()))
      jax.jit(lambda x: x + 1)(1.0)
      print(len(count))
      """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.strip().splitlines()
  compiled, started = map(int, lines[-2].split())
  assert (compiled, started) == (0, 0), (compiled, started)
  assert int(lines[-1]) >= 1


ray = pytest.importorskip("ray")


def test_ray_data_gives_the_clis_bytes(tmp_path):
  from djpeg import raydata
  make_library(tmp_path / "in")
  assert cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "cli"), "--jobs", "1",
                   "--quiet", "--no-cache"]) == 0
  ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True,
           log_to_driver=False)
  try:
    outcomes = raydata.export_folder([str(tmp_path / "in")], str(tmp_path / "ray"),
                                     ExportOptions(), concurrency=2)
    assert all(o.error is None for o in outcomes)
    for o in outcomes:
      cli_file = tmp_path / "cli" / os.path.relpath(o.destination, tmp_path / "ray")
      assert open(o.destination, "rb").read() == cli_file.read_bytes()
    data = [p.read_bytes() for p in sorted((tmp_path / "in").rglob("*.png"))]
    dataset = ray.data.from_items([{"bytes": d} for d in data]).map_batches(
        raydata.Exporter, fn_constructor_kwargs={"options": ExportOptions(mode="libjpeg")},
        concurrency=1, batch_size=2)
    rows = dataset.take_all()
    assert len(rows) == len(data) and all(r["error"] == "" and len(r["jpeg"]) for r in rows)
  finally:
    ray.shutdown()


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
  # Ctrl-C at the worst moment, as the finished file is moved into place: nothing is left.
  import djpeg.atomic
  source = tmp_path / "in.png"
  Image.fromarray(samples.load("limes", uint8=True)).save(source)

  def interrupted(*args):
    raise KeyboardInterrupt
  monkeypatch.setattr(djpeg.atomic.os, "replace", interrupted)
  with pytest.raises(KeyboardInterrupt):
    export_file(source, tmp_path / "out.jpg", ExportOptions(mode="libjpeg"))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_a_full_disk_is_named_by_the_output(tmp_path, monkeypatch):
  # ENOSPC from a write carries no file name: the message had named the input.
  import djpeg.atomic
  source = tmp_path / "in.png"
  Image.fromarray(samples.load("limes", uint8=True)).save(source)

  def full(*args):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(djpeg.atomic.os, "chmod", full)
  out = tmp_path / "out.jpg"
  with pytest.raises(SystemExit, match=f"{out}: No space left on device"):
    cli.main(["encode", str(source), str(out), "--libjpeg", "--quiet", "--no-cache"])
  assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
  with pytest.raises(SystemExit, match="output file's name is empty"):
    cli.main(["encode", str(source), "", "--libjpeg", "--no-cache"])


def test_reuse_freed_memory_takes_effect_on_glibc():
  # The CLI and its workers keep freed memory for reuse (mallopt); off glibc it is a no-op.
  import platform
  assert batch.reuse_freed_memory() is (platform.libc_ver()[0] == "glibc")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork on Linux only")
def test_workers_are_forked_only_while_no_xla_runtime_exists():
  # The default and libjpeg modes run no XLA: their workers are forked from the warmed-up
  # parent; a mode that runs XLA, or a parent that has started XLA's runtime (whose threads
  # do not survive a fork), spawns them.
  code = textwrap.dedent("""
      from djpeg import batch
      from djpeg.export import ExportOptions
      names = [batch._worker_context(ExportOptions()).get_start_method(),
               batch._worker_context(ExportOptions(mode="libjpeg")).get_start_method(),
               batch._worker_context(ExportOptions(mode="trellis")).get_start_method()]
      import jax.numpy as jnp
      jnp.zeros(3).block_until_ready()
      names.append(batch._worker_context(ExportOptions()).get_start_method())
      print(" ".join(names))
      """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split()[-4:] == ["fork", "fork", "spawn", "spawn"]


def test_the_first_run_after_installing_says_it_compiles(tmp_path, capsys, monkeypatch):
  # With an empty numba cache (a fresh installation) the loops are not there ...
  env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
  out = subprocess.run([sys.executable, "-c", "from djpeg import batch; "
                        "print(batch.loops_compiled('libjpeg'), batch.loops_compiled())"],
                       env=env, capture_output=True, text=True, check=True).stdout.split()
  assert out == ["False", "False"]
  # ... and once the libjpeg mode has run in this process, its loops are on disk.
  make_library(tmp_path / "in", sizes=((40, 33),))
  source = str(tmp_path / "in" / "trip" / "day1" / "img0.jpg")
  assert cli.main(["encode", source, str(tmp_path / "a.jpg"), "--libjpeg"]) == 0
  assert batch.loops_compiled("libjpeg") is True
  assert "compiling" not in capsys.readouterr().err
  # The CLI tells a user who would otherwise wait some 40 s in silence (not with --quiet).
  monkeypatch.setattr(batch, "loops_compiled", lambda mode="perceptual": False)
  assert cli.main(["encode", source, str(tmp_path / "b.jpg"), "--libjpeg"]) == 0
  assert "compiling djpeg's loops" in capsys.readouterr().err
  assert cli.main(["encode", source, str(tmp_path / "c.jpg"), "--libjpeg", "--quiet"]) == 0
  assert "compiling" not in capsys.readouterr().err


def test_the_loops_compiled_in_parts_are_all_an_export_needs(tmp_path):
  # `compile_loops` compiles the default mode's loops in parts, in processes side by side, into
  # numba's on-disk cache. A new process then exports a PNG and a JPEG (`warm_up`) without
  # compiling any of djpeg's loops: the parts reached every loop, with the export's own
  # signatures (array types, layouts, read-only flags), which numba keys its cache by.
  env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
  subprocess.run([sys.executable, "-c", "from djpeg import batch; "
                  "batch.compile_loops('perceptual', 2)"],
                 env=env, check=True, capture_output=True, timeout=600)
  code = textwrap.dedent("""
      from numba.core import event
      compiled = []
      class Listener(event.Listener):
        def on_start(self, e):
          pass
        def on_end(self, e):
          compiled.append(e.data["dispatcher"].py_func.__module__)
      event.register("numba:compile", Listener())
      from djpeg import batch
      from djpeg.export import ExportOptions
      print(batch.loops_compiled())
      batch.warm_up(ExportOptions())
      print(sorted(set(m for m in compiled if m.startswith("djpeg"))))
      """)
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split("\n")[:2] == ["True", "[]"]


def test_compiling_in_parts_gives_way_where_no_process_can_start(monkeypatch):
  # Where processes cannot start (no /dev/shm for their semaphores, a process limit), the
  # first run goes on and compiles the loops as the export reaches them: no crash.
  def no_processes(*args, **kwargs):
    raise OSError(38, "Function not implemented")
  monkeypatch.setattr(batch.concurrent.futures, "ProcessPoolExecutor", no_processes)
  assert batch.compile_loops("libjpeg", 2) is None
  with pytest.raises(ValueError, match="mode must be one of"):
    batch.compile_loops("trellis")


def test_an_interrupted_run_with_workers_stops_soon(tmp_path):
  # Ctrl-C to the terminal's process group: the jobs not started are cancelled (the pool's own
  # exit used to wait for all of them, so a library's run went on to the end).
  (tmp_path / "in").mkdir()
  photo = samples.load("castle", uint8=True)
  for i in range(24):
    Image.fromarray(np.roll(photo, 7 * i, axis=1)).resize((384, 256)).save(
        tmp_path / "in" / f"p{i:02d}.png")
  proc = subprocess.Popen([sys.executable, "-m", "djpeg", "encode", str(tmp_path / "in"), "-o",
                           str(tmp_path / "out"), "--jobs", "2", "--no-cache", "--quiet"],
                          start_new_session=True, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_ctrl_c_as_in_a_terminal)
  deadline = time.monotonic() + 600          # a hang guard (a first run compiles), not a timing
  while not list((tmp_path / "out").glob("*.jpg")) and proc.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGINT)
  assert proc.wait(timeout=600) == 130
  assert "interrupted" in proc.stderr.read()
  written = [p.name for p in (tmp_path / "out").iterdir()]
  assert len(written) < 12 and not any(n.startswith(".djpeg-") for n in written), written


def test_sigterm_to_the_process_group_ends_the_run_quietly(tmp_path):
  # What `timeout`, Slurm and systemd do: SIGTERM to every process of the run. Workers had
  # printed tracebacks, and the parent sometimes waited forever for a worker that had died
  # holding the pool's queue. Now the workers leave it to the parent, which cancels the jobs
  # not started and ends once the files in progress are written.
  # One worker is idle (its small image done), the other busy with a large one.
  (tmp_path / "in").mkdir()
  noise = np.random.default_rng(0).integers(0, 256, (2048, 2560, 3), dtype=np.uint8)
  Image.fromarray(noise).save(tmp_path / "in" / "large.png", compress_level=1)
  Image.fromarray(noise[:64, :64]).save(tmp_path / "in" / "small.png")
  proc = subprocess.Popen([sys.executable, "-m", "djpeg", "encode", str(tmp_path / "in"), "-o",
                           str(tmp_path / "out"), "--jobs", "2", "--no-cache", "--quiet"],
                          start_new_session=True, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 600          # a hang guard (a first run compiles), not a timing
  while not (tmp_path / "out" / "small.jpg").exists() and proc.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.05)
  time.sleep(0.5)
  os.killpg(proc.pid, signal.SIGTERM)
  assert proc.wait(timeout=600) == 130
  err = proc.stderr.read()
  assert "interrupted" in err and "Traceback" not in err, err
  written = [p.name for p in (tmp_path / "out").iterdir()]
  assert not any(n.startswith(".djpeg-") for n in written), written
  for name in written:
    pillow_decode((tmp_path / "out" / name).read_bytes())


def test_two_existing_files_are_not_overwritten_without_asking(tmp_path):
  # `djpeg-cli encode IMG_*.jpg` with two matches: the second is an input, not an output.
  photo = samples.load("houses", uint8=True)
  Image.fromarray(photo).save(tmp_path / "IMG_1.jpg", quality=90)
  Image.fromarray(photo[::-1].copy()).save(tmp_path / "IMG_2.jpg", quality=90)
  second = (tmp_path / "IMG_2.jpg").read_bytes()
  with pytest.raises(SystemExit, match="exists and looks like an input; --overwrite"):
    cli.main(["encode", str(tmp_path / "IMG_1.jpg"), str(tmp_path / "IMG_2.jpg"), "--no-cache"])
  assert (tmp_path / "IMG_2.jpg").read_bytes() == second
  assert cli.main(["encode", str(tmp_path / "IMG_1.jpg"), str(tmp_path / "IMG_2.jpg"),
                   "--overwrite", "--quiet", "--no-cache"]) == 0
  assert (tmp_path / "IMG_2.jpg").read_bytes() != second
  for args, message in (([str(tmp_path / "nothing.png"), str(tmp_path / "x.jpg")], "no such file"),
                        ([str(tmp_path), str(tmp_path / "x.jpg")], "is a folder"),
                        ([str(tmp_path / "IMG_1.jpg"), str(tmp_path)], "is a folder"),
                        ([str(tmp_path / "IMG_1.jpg"), str(tmp_path / "no" / "x.jpg")],
                         "does not exist")):
    with pytest.raises(SystemExit, match=message):
      cli.main(["encode", *args, "--no-cache"])
  assert sorted(p.name for p in tmp_path.iterdir()) == ["IMG_1.jpg", "IMG_2.jpg"]
  Image.fromarray(photo).save(tmp_path / "b.png")          # `encode *.png` with two matches
  Image.fromarray(photo).save(tmp_path / "c.png")
  with pytest.raises(SystemExit, match="looks like an input"):
    cli.main(["encode", str(tmp_path / "b.png"), str(tmp_path / "c.png"), "--no-cache"])
  # .jpeg and .jpg are one kind: a pattern matching a.jpeg and b.jpg does not replace b.jpg.
  Image.fromarray(photo).save(tmp_path / "a.jpeg", quality=90)
  with pytest.raises(SystemExit, match="looks like an input"):
    cli.main(["encode", str(tmp_path / "a.jpeg"), str(tmp_path / "IMG_2.jpg"), "--no-cache"])
  # A JPEG output of a PNG, written again (another setting), is simply replaced.
  for quality in ("70", "80"):
    assert cli.main(["encode", str(tmp_path / "b.png"), str(tmp_path / "b.jpg"), "--quality",
                     quality, "--libjpeg", "--quiet", "--no-cache"]) == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_folder_search_takes_regular_files_only(tmp_path):
  # A named pipe called like an image in a folder had been opened and read forever.
  (tmp_path / "in").mkdir()
  Image.fromarray(samples.load("limes", uint8=True)).save(tmp_path / "in" / "a.png")
  os.mkfifo(tmp_path / "in" / "pipe.png")
  os.symlink(tmp_path / "in" / "a.png", tmp_path / "in" / "link.png")
  jobs = batch.plan([str(tmp_path / "in")], str(tmp_path / "out"))
  assert sorted(os.path.basename(source) for source, _ in jobs) == ["a.png", "link.png"]


def test_an_output_folder_inside_the_input_folder_is_not_searched(tmp_path, capsys):
  make_library(tmp_path / "lib")
  out = tmp_path / "lib" / "jpeg"
  for _ in range(2):
    assert cli.main(["encode", str(tmp_path / "lib"), "-o", str(out), "--libjpeg", "--jobs", "1",
                     "--quiet", "--no-cache"]) == 0
  assert not (out / "jpeg").exists() and len(list(out.rglob("*.jpg"))) == 3
  (tmp_path / "heic").mkdir()
  (tmp_path / "heic" / "a.heic").write_bytes(b"not read")
  with pytest.raises(SystemExit, match="no image files"):
    cli.main(["encode", str(tmp_path / "heic"), "-o", str(tmp_path / "o2"), "--no-cache"])
  # .jfif and .jpe are JPEG files too.
  (tmp_path / "j").mkdir()
  Image.fromarray(samples.load("houses", uint8=True)).save(tmp_path / "j" / "a.jfif", "JPEG")
  assert cli.main(["encode", str(tmp_path / "j"), "-o", str(tmp_path / "o3"), "--libjpeg",
                   "--jobs", "1", "--quiet", "--no-cache"]) == 0
  assert (tmp_path / "o3" / "a.jpg").exists()


def test_batch_reports_notes_and_each_failure_once(tmp_path, capsys):
  (tmp_path / "in").mkdir()
  photo = samples.load("houses", uint8=True)
  Image.fromarray(photo).save(tmp_path / "in" / "anim.gif", save_all=True,
                              append_images=[Image.fromarray(photo[::-1].copy())])
  (tmp_path / "in" / "zero.png").write_bytes(b"")
  assert cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--jobs", "1",
                   "--no-cache", "--libjpeg"]) == 1
  err = capsys.readouterr().err
  lines = lambda text, name: sum(name in line for line in text.splitlines())
  assert "anim.gif: note:" in err and "2 frames" in err and lines(err, "zero.png") == 1
  assert cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--jobs", "1",
                   "--no-cache", "--libjpeg", "--quiet"]) == 1
  err = capsys.readouterr().err
  assert lines(err, "zero.png") == 1 and ": note:" not in err


def test_bad_options_are_refused_before_any_image_is_encoded(tmp_path, monkeypatch):
  make_library(tmp_path / "in")
  monkeypatch.setattr("djpeg.export.encode_pixels_for", lambda *a: pytest.fail("encoded"))
  with pytest.raises(SystemExit, match="restart_interval must be an integer in 0..65535"):
    cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--jobs", "1",
              "--no-cache", "--restart-interval", "-1"])
  # --jobs and --shard in both forms (one file had taken any --shard, and --jobs -1 ran).
  one = [str(next((tmp_path / "in").rglob("*.png"))), str(tmp_path / "one.jpg")]
  for args, message in (([*one, "--shard", "3/2"], "--shard splits the inputs"),
                        ([*one, "--jobs", "-1"], "--jobs takes"),
                        ([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--jobs", "0"],
                         "--jobs takes"),
                        ([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--shard", "a/b"],
                         "--shard takes I/N")):
    with pytest.raises(SystemExit, match=message):
      cli.main(["encode", *args, "--no-cache"])
  assert not (tmp_path / "out").exists() and not (tmp_path / "one.jpg").exists()


def test_demo_refuses_bad_qualities_before_any_work(monkeypatch):
  # The README's first command: bad --qualities had ended in a traceback from int(), or (0,
  # 101) in checks.py after some 18 s of the demo's work.
  monkeypatch.setattr("djpeg.optimize_tables", lambda *a, **k: pytest.fail("worked"))
  for bad in ("abc", "", "50,,60", "nan", "50.5", "0", "101", "-5"):
    with pytest.raises(SystemExit, match="--qualities takes comma-separated integers in 1..100"):
      cli.main(["demo", "--qualities", bad])


def test_a_tiff_is_not_turned_twice(tmp_path):
  # Pillow turns a TIFF's pixels by its orientation tag as it reads them (Pillow 13); the
  # JPEG must not carry the tag as well, or viewers turn the picture a second time.
  from PIL import ImageOps
  photo = samples.load("houses", uint8=True)
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(photo).save(tmp_path / "o6.tif", exif=exif)
  shown = ImageOps.exif_transpose(Image.open(tmp_path / "o6.tif"))
  assert cli.main(["encode", str(tmp_path / "o6.tif"), str(tmp_path / "o6.jpg"), "--libjpeg",
                   "--quiet", "--no-cache"]) == 0
  assert ImageOps.exif_transpose(Image.open(tmp_path / "o6.jpg")).size == shown.size


def test_a_transparent_colour_key_is_transparency(tmp_path):
  from djpeg import load_image
  pixels = samples.load("houses", uint8=True).copy()
  pixels[:10] = 0
  Image.fromarray(pixels).save(tmp_path / "key.png", transparency=(0, 0, 0))
  with pytest.raises(ValueError, match="transparency"):
    load_image(tmp_path / "key.png")
  assert (load_image(tmp_path / "key.png", matte="white")[:10] == 255).all()
  # The CLI takes a colour as R,G,B too (its message had offered a triple it did not take).
  assert cli.main(["encode", str(tmp_path / "key.png"), str(tmp_path / "key.jpg"), "--matte",
                   "200,0,0", "--libjpeg", "--quality", "95", "--quiet", "--no-cache"]) == 0
  top = pillow_decode((tmp_path / "key.jpg").read_bytes())[:8].reshape(-1, 3).mean(0)
  assert abs(top - (200, 0, 0)).max() < 4, top
  with pytest.raises(SystemExit, match="unknown matte 'red'"):
    cli.main(["encode", str(tmp_path / "key.png"), str(tmp_path / "k2.jpg"), "--matte", "red",
              "--no-cache"])


def test_gray_with_alpha_takes_the_mattes_luma(tmp_path):
  gray = np.zeros((16, 16, 2), np.uint8)
  gray[..., 0] = 200
  gray[:, :8, 1] = 255                                   # left half opaque, right transparent
  Image.fromarray(gray, "LA").save(tmp_path / "la.png")
  from djpeg import load_image
  out = load_image(tmp_path / "la.png", matte=(255, 0, 0))
  assert out.shape == (16, 16, 1) and (out[:, :8] == 200).all()
  assert (out[:, 8:] == round(0.299 * 255)).all()        # red's Y, not its red channel


def test_skip_existing_with_one_file_and_modules_named_from_djpeg(tmp_path, capsys):
  import djpeg
  source = tmp_path / "in.png"
  Image.fromarray(samples.load("houses", uint8=True)).save(source)
  (tmp_path / "out.jpg").write_bytes(b"kept")
  assert cli.main(["encode", str(source), str(tmp_path / "out.jpg"), "--skip-existing",
                   "--no-cache"]) == 0
  assert (tmp_path / "out.jpg").read_bytes() == b"kept" and "left alone" in capsys.readouterr().out
  assert djpeg.batch.enable_compilation_cache and djpeg.recompress.optimize_file
