"""Writing files atomically: a temporary file in the same folder, then a rename.

A reader never sees a half-written file, and a failure leaves nothing behind. The file gets the
permissions a plain `open(path, "w")` would give (0666 less the umask), not mkstemp's 0600.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def check_writable(path) -> str:
  """`path` as a string, if a file can be written there: ValueError for an empty name,
  IsADirectoryError for a folder, FileNotFoundError for a folder that does not exist (named
  here: the temporary file's name would otherwise be the one in the message)."""
  path = os.fspath(path)
  if not path:
    raise ValueError("the output file's name is empty.")
  if os.path.isdir(path):
    raise IsADirectoryError(21, "is a folder, not a file name", path)
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise FileNotFoundError(2, f"the folder {directory!r} does not exist", path)
  return path


def write_atomic(path, write: Callable[[str], None]) -> None:
  """Calls `write(tmp_path)` to fill a temporary file beside `path`, then renames it to `path`."""
  path = check_writable(path)
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".djpeg-", suffix=".tmp")
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except OSError as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if e.filename is None or e.filename == tmp:
      # A full disk, a quota: named by the file being written, not by no file or the
      # temporary one, which a message would then show (or callers replace with the input's).
      raise OSError(e.errno, e.strerror, path) from e
    raise
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_bytes_atomic(path, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  def write(tmp):
    with open(tmp, "wb") as f:
      f.write(data)
  write_atomic(path, write)
