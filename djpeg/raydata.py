"""Beyond one machine: the same export over a Ray Data dataset (`pip install "djpeg[ray]"`).

Two ways in:

* `Exporter`, a callable class for `Dataset.map_batches`: each Ray actor builds it once, so its
  compiled functions stay warm across batches. It takes batches with a "bytes" column (the
  image files, as `ray.data.read_binary_files` reads them, optionally with "path") and adds
  "jpeg" (the file's bytes, empty on failure), "output_bytes", "ssimulacra2" and "error":

      ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
      ds = ds.map_batches(Exporter, fn_constructor_kwargs={"options": ExportOptions(quality=80)},
                          concurrency=8, batch_size=4)
      ds.write_parquet("s3://bucket/exported/")      # or write each row's "jpeg" where it goes

* `export_folder(inputs, output_dir)`, for a shared file system: the CLI's plan (`djpeg.batch.
  plan`, the output tree mirrors the inputs), exported by an actor pool; the bytes are the
  CLI's, since both run `djpeg.export.export_file`.

Ray is an optional dependency, imported only when these are used.
"""

from __future__ import annotations

import os

import numpy as np

from djpeg.batch import Outcome, enable_compilation_cache, plan
from djpeg.exact import JPEGError
from djpeg.export import ExportOptions, export_bytes, export_file


class Exporter:
  """`map_batches` callable: image file bytes in, JPEG file bytes out (module docstring).

  Args:
    options: how to export (`djpeg.export.ExportOptions`).
    cache: a persistent compilation cache folder shared by the actors (None: none).
  """

  def __init__(self, options: ExportOptions = ExportOptions(), cache: str | None = None):
    options.check()
    if cache:
      enable_compilation_cache(cache)
    self.options = options

  def __call__(self, batch: dict) -> dict:
    jpegs, sizes, scores, errors = [], [], [], []
    paths = batch.get("path", [None] * len(batch["bytes"]))
    for data, path in zip(batch["bytes"], paths):
      try:
        jpeg, result = export_bytes(bytes(data), self.options, measure=False)
        jpegs.append(jpeg)
        sizes.append(len(jpeg))
        scores.append(np.nan if result.ssimulacra2 is None else result.ssimulacra2)
        errors.append("")
      except (ValueError, JPEGError, NotImplementedError) as e:
        jpegs.append(b"")
        sizes.append(0)
        scores.append(np.nan)
        errors.append(f"{path}: {e}" if path is not None else str(e))
    out = dict(batch)
    out.update(jpeg=np.array(jpegs, dtype=object), output_bytes=np.array(sizes),
               ssimulacra2=np.array(scores, np.float64), error=np.array(errors, dtype=object))
    return out


class _FileExporter:
  """`map_batches` callable over (source, destination) rows: `export_file` on a shared disk."""

  def __init__(self, options: ExportOptions, cache: str | None = None):
    options.check()
    if cache:
      enable_compilation_cache(cache)
    self.options = options

  def __call__(self, batch: dict) -> dict:
    errors, sizes = [], []
    for source, destination in zip(batch["source"], batch["destination"]):
      try:
        sizes.append(export_file(str(source), str(destination), self.options,
                                 measure=False).output_bytes)
        errors.append("")
      except (ValueError, JPEGError, OSError, NotImplementedError) as e:
        sizes.append(0)
        errors.append(str(e))
    return {"source": batch["source"], "destination": batch["destination"],
            "output_bytes": np.array(sizes), "error": np.array(errors, dtype=object)}


def export_folder(inputs: list[str], output_dir: str, options: ExportOptions = ExportOptions(),
                  *, concurrency: int = 2, cache: str | None = None) -> list[Outcome]:
  """Exports inputs (files, folders, patterns) under `output_dir` with a pool of Ray actors.

  Needs a running Ray (`ray.init(...)`) or starts a local one; the outputs must be on a file
  system every node sees. Returns one `djpeg.batch.Outcome` per input (results without the
  per-file statistics; errors named).
  """
  import ray   # optional: only this path needs it
  jobs = plan(inputs, output_dir)
  for _, destination in jobs:
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
  dataset = ray.data.from_items([{"source": s, "destination": d} for s, d in jobs])
  done = dataset.map_batches(_FileExporter, fn_constructor_kwargs={"options": options,
                                                                   "cache": cache},
                             concurrency=concurrency, batch_size=1)
  rows = {row["source"]: row for row in done.take_all()}
  return [Outcome(s, d, error=rows[s]["error"] or None) for s, d in jobs]
