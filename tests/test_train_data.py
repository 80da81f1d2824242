"""train.data: labeled and unlabeled streams, reproducibility, resume, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from train_util import class_image, make_folder
from djpeg.train import data


@pytest.fixture
def folder(tmp_path):
  return make_folder(str(tmp_path / "ds"), per_class=6, size=16)


def take(stream, n):
  return [next(stream) for _ in range(n)]


def test_labeled_batches(folder):
  stream = data.ImageFolder(folder, batch_size=4, seed=0)
  assert stream.classes == ["a", "b", "c"] and len(stream) == 18 and stream.steps_per_epoch == 4
  images, labels = next(stream)
  assert images.shape == (4, 16, 16, 3) and images.dtype == np.float32
  assert labels.dtype == np.int32 and 0 <= images.min() and images.max() <= 1
  # Labels follow the folders: every image equals its class's pattern (flips aside).
  plain = data.ImageFolder(folder, batch_size=18, shuffle=False, flip=False, drop_last=False,
                           epochs=1, uint8=True)
  images, labels = next(plain)
  assert list(labels) == [0] * 6 + [1] * 6 + [2] * 6
  np.testing.assert_array_equal(images[7], class_image(1, 1))
  with pytest.raises(StopIteration):
    next(plain)


def test_seeded_shuffle_per_epoch(folder):
  a = take(data.ImageFolder(folder, batch_size=6, seed=3, flip=True), 6)
  b = take(data.ImageFolder(folder, batch_size=6, seed=3, flip=True), 6)
  c = take(data.ImageFolder(folder, batch_size=6, seed=4, flip=True), 6)
  for (xa, ya), (xb, yb) in zip(a, b):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
  epoch0 = np.concatenate([y for _, y in a[:3]])
  epoch1 = np.concatenate([y for _, y in a[3:]])
  assert sorted(epoch0) == sorted(epoch1) and list(epoch0) != list(epoch1)


def test_resume_reproduces_batches(folder):
  uninterrupted = data.ImageFolder(folder, batch_size=4, seed=1, flip=True, pad_crop=2)
  expected = take(uninterrupted, 9)          # crosses two epoch boundaries
  first = data.ImageFolder(folder, batch_size=4, seed=1, flip=True, pad_crop=2)
  take(first, 5)
  state = first.get_state()
  resumed = data.ImageFolder(folder, batch_size=4, seed=1, flip=True, pad_crop=2)
  resumed.set_state(state)
  for (x, y), (xe, ye) in zip(take(resumed, 4), expected[5:]):
    np.testing.assert_array_equal(x, xe)
    np.testing.assert_array_equal(y, ye)
  with pytest.raises(ValueError, match="seed"):
    data.ImageFolder(folder, batch_size=4, seed=2).set_state(state)
  with pytest.raises(ValueError, match="iterator state"):
    resumed.set_state({"epoch": 1})


def test_crop_stream_any_sizes_and_modes(tmp_path):
  root = tmp_path / "mixed"
  (root / "sub").mkdir(parents=True)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (40, 30, 3), np.uint8)).save(root / "a.png")
  Image.fromarray(rng.integers(0, 255, (20, 50), np.uint8)).save(root / "sub" / "gray.bmp")
  Image.fromarray(rng.integers(0, 255, (33, 33, 3), np.uint8)).save(root / "c.jpg", quality=90)
  Image.fromarray(rng.integers(0, 65535, (24, 24), np.uint16)).save(root / "d.tif")
  Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(root / "small.png")
  stream = data.CropStream(str(root), crop=16, batch_size=4, seed=0, crops_per_image=2)
  batches = take(stream, 5)
  assert all(b.shape == (4, 16, 16, 3) and b.dtype == np.float32 for b in batches)
  again = data.CropStream(str(root), crop=16, batch_size=4, seed=0, crops_per_image=2)
  take(again, 2)
  resumed = data.CropStream(str(root), crop=16, batch_size=4, seed=0, crops_per_image=2)
  resumed.set_state(again.get_state())
  for got, want in zip(take(resumed, 3), batches[2:]):
    np.testing.assert_array_equal(got, want)


def test_process_slices_make_the_global_batch(folder):
  whole = take(data.ImageFolder(folder, batch_size=6, seed=5, flip=True), 4)
  parts = [take(data.ImageFolder(folder, batch_size=6, seed=5, flip=True, process_index=i,
                                 process_count=2), 4) for i in range(2)]
  for k in range(4):
    np.testing.assert_array_equal(np.concatenate([parts[0][k][0], parts[1][k][0]]), whole[k][0])


def test_unreadable_images_are_skipped(folder):
  with open(os.path.join(folder, "b", "broken.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not really a png")
  stream = data.ImageFolder(folder, batch_size=4, seed=0)
  with pytest.warns(UserWarning, match="unreadable"):
    batches = take(stream, 10)
  assert stream.skipped == 1 and all(len(y) == 4 for _, y in batches)


def test_holdout_is_fixed_per_class_and_partitions_the_folder(folder):
  everything = data.ImageFolder(folder, batch_size=2, shuffle=False, drop_last=False)
  rest = [data.ImageFolder(folder, batch_size=2, seed=s, holdout=2, part="rest") for s in (0, 1)]
  held = data.ImageFolder(folder, batch_size=2, holdout=2, part="holdout", shuffle=False,
                          drop_last=False)
  assert rest[0].paths == rest[1].paths          # the same split whatever the seed
  assert sorted(rest[0].paths + held.paths) == sorted(everything.paths)
  assert np.bincount(held.labels).tolist() == [2] * everything.num_classes
  with pytest.raises(ValueError, match="leave none"):
    data.ImageFolder(folder, batch_size=2, holdout=1000)
  with pytest.raises(ValueError, match="part"):
    data.ImageFolder(folder, batch_size=2, holdout=2, part="test")


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    data.ImageFolder(str(tmp_path / "missing"), batch_size=2)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no class subfolders"):
    data.ImageFolder(str(tmp_path / "empty"), batch_size=2)
  with pytest.raises(ValueError, match="no images"):
    data.CropStream(str(tmp_path / "empty"), crop=8, batch_size=2)
  flat = tmp_path / "flat"
  flat.mkdir()
  Image.fromarray(class_image(0, 0)).save(flat / "x.png")
  with pytest.raises(ValueError, match="no class subfolders"):
    data.ImageFolder(str(flat), batch_size=1)
  root = make_folder(str(tmp_path / "noimg"), per_class=2)
  os.makedirs(os.path.join(root, "d_empty"))
  with pytest.raises(ValueError, match="class 'd_empty'.*no images"):
    data.ImageFolder(root, batch_size=2)
  mixed = make_folder(str(tmp_path / "mixed"), per_class=2)
  Image.fromarray(class_image(0, 9, size=20)).save(os.path.join(mixed, "a", "big.png"))
  with pytest.raises(ValueError, match="different sizes.*resize"):
    data.ImageFolder(mixed, batch_size=2)
  images, _ = next(data.ImageFolder(mixed, batch_size=7, resize=12))
  assert images.shape == (7, 12, 12, 3)
  with pytest.raises(ValueError, match="fewer than one batch"):
    data.ImageFolder(mixed, batch_size=100, resize=12)
  with pytest.raises(ValueError, match="batch_size"):
    data.ImageFolder(mixed, batch_size=0, resize=12)
