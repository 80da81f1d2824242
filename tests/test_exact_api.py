"""`save` / `dumps` arguments: images and coefficients, batches, targets, tables, atomic writes."""

from __future__ import annotations

import io

import numpy as np
import pytest

import djpeg
from djpeg import samples
from exact_util import PIL_SUBSAMPLING, assert_same_coefficients, pillow_file, pillow_pixels


def test_uint8_and_float_images_give_the_same_file():
  pixels = samples.load("limes", uint8=True)
  data = djpeg.dumps(pixels, quality=70)
  assert djpeg.dumps(pixels.astype(np.float32) / 255, quality=70) == data
  assert djpeg.dumps(djpeg.encode(samples.load("limes"), quality=70)) == data
  gray = samples.load("bear_gray", uint8=True)
  assert djpeg.dumps(gray[..., 0]) == djpeg.dumps(gray)  # (H, W) uint8 is gray


def test_qtables_forms_match_pillow():
  pixels = samples.load("houses", uint8=True)
  luma = np.arange(1, 65).reshape(8, 8)
  chroma = np.full((8, 8), 20)
  want = pillow_file(pixels, qtables=[luma.ravel().tolist(), chroma.ravel().tolist()],
                     subsampling=PIL_SUBSAMPLING["4:2:0"], optimize=True)
  for form in ([luma.ravel().tolist(), chroma.ravel().tolist()], np.stack([luma, chroma]),
               {0: luma.ravel().tolist(), 1: chroma.ravel().tolist()}):
    got = djpeg.dumps(pixels, qtables=form)
    np.testing.assert_array_equal(np.asarray(djpeg.load_coefficients(got).tables)[:2],
                                  np.stack([luma, chroma]))
    assert got == want


def test_batches_write_one_file_per_image(tmp_path):
  images = np.stack([samples.load(n) for n in ("limes", "houses", "castle")])
  c = djpeg.encode(images, quality=np.array([30.0, 60.0, 90.0]))
  files = djpeg.dumps(c, progressive=True)
  assert isinstance(files, list) and len(files) == 3
  paths = [tmp_path / f"{i}.jpg" for i in range(3)]
  djpeg.save(paths, c, progressive=True)
  for i, (path, data) in enumerate(zip(paths, files)):
    assert path.read_bytes() == data
    one = djpeg.load_coefficients(path)
    np.testing.assert_array_equal(one.components[0], np.asarray(c.components[0][i]))
  with pytest.raises(ValueError, match="sequence of 3"):
    djpeg.save(tmp_path / "one.jpg", c)
  assert djpeg.dumps(images[:2], quality=50) == [djpeg.dumps(images[0], quality=50),
                                                djpeg.dumps(images[1], quality=50)]


def test_save_to_file_objects_and_paths(tmp_path):
  pixels = samples.load("castle", uint8=True)
  buf = io.BytesIO()
  djpeg.save(buf, pixels, quality=88, subsampling="4:4:4", restart_interval=4)
  data = buf.getvalue()
  assert data == pillow_file(pixels, quality=88, subsampling=0, optimize=True,
                             restart_marker_blocks=4)
  djpeg.save(str(tmp_path / "a.jpg"), pixels, quality=88, subsampling="4:4:4", restart_interval=4)
  assert (tmp_path / "a.jpg").read_bytes() == data
  (tmp_path / "b.jpg").write_bytes(b"old")
  djpeg.save(tmp_path / "b.jpg", pixels)  # replaces atomically
  assert pillow_pixels((tmp_path / "b.jpg").read_bytes()).shape == pixels.shape
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg"]  # no temporary files


def test_failed_save_leaves_old_file_untouched(tmp_path):
  path = tmp_path / "x.jpg"
  path.write_bytes(b"previous")
  with pytest.raises(ValueError):
    djpeg.save(path, samples.load("limes", uint8=True), qtables=[[1] * 63 + [999]])
  assert path.read_bytes() == b"previous"
  assert [p.name for p in tmp_path.iterdir()] == ["x.jpg"]


def test_argument_errors():
  c = djpeg.encode(samples.load("bear_gray"))
  with pytest.raises(ValueError, match="qtables"):
    djpeg.dumps(c, qtables=[[1] * 64])
  with pytest.raises(ValueError, match="subsampling"):
    djpeg.dumps(c, subsampling="4:4:4")
  with pytest.raises(ValueError, match="restart_interval"):
    djpeg.dumps(c, restart_interval=-1)
  with pytest.raises(ValueError, match="qtables"):
    djpeg.dumps(samples.load("limes"), qtables=np.ones((5, 8, 8)))
  with pytest.raises(ValueError, match="path or a binary file"):
    djpeg.save(42, c)
  with pytest.raises(ValueError, match="binary file object .opened with 'wb'"):
    djpeg.save(io.StringIO(), c)        # had raised "write() argument must be str"


def test_a_batch_with_one_bad_path_writes_nothing(tmp_path):
  # The first file had been written before the second path failed.
  batch = np.stack([samples.load("limes", uint8=True)] * 2)
  for bad, error, problem in ((tmp_path / "no" / "b.jpg", FileNotFoundError, "does not exist"),
                              (tmp_path, IsADirectoryError, "is a folder"),
                              ("", ValueError, "name is empty")):
    with pytest.raises(error, match=problem):
      djpeg.save([tmp_path / "a.jpg", bad], batch)
    assert list(tmp_path.iterdir()) == []


def test_coefficients_from_files_round_trip_through_save(tmp_path):
  data = pillow_file(samples.load("houses", uint8=True), quality=40, subsampling=1)
  c = djpeg.load_coefficients(data)
  djpeg.save(tmp_path / "y.jpg", c, optimize=False)
  assert (tmp_path / "y.jpg").read_bytes() == pillow_file(samples.load("houses", uint8=True),
                                                          quality=40, subsampling=1)
  assert_same_coefficients(djpeg.load_coefficients(tmp_path / "y.jpg"), c)


def test_saved_files_get_ordinary_permissions(tmp_path):
  """Atomic saves go through a private temporary file; the result is readable like any file."""
  import os
  import stat
  path = tmp_path / "p.jpg"
  djpeg.save(path, np.zeros((8, 8, 3), np.uint8))
  mask = os.umask(0)
  os.umask(mask)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
