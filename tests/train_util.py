"""Helpers for the training tests: tiny image folders written into a temporary directory."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def class_image(label: int, index: int, size: int = 16) -> np.ndarray:
  """A learnable uint8 `(size, size, 3)` image of class `label`: coloured stripes plus noise."""
  rng = np.random.default_rng([label, index])
  y, x = np.mgrid[:size, :size]
  pattern = [(x // 4) % 2, (y // 4) % 2, ((x + y) // 4) % 2][label % 3]
  colour = np.asarray([[200, 60, 60], [60, 200, 60], [60, 60, 200]][label % 3])
  img = pattern[..., None] * colour + rng.integers(0, 40, (size, size, 3))
  return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: str, classes=("a", "b", "c"), per_class: int = 8, size: int = 16,
                fmt: str = "png") -> str:
  """Writes `root/<class>/<i>.<fmt>` images and returns `root`."""
  for label, name in enumerate(classes):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(per_class):
      Image.fromarray(class_image(label, i, size)).save(os.path.join(root, name, f"{i:03d}.{fmt}"))
  return root


def make_dataset(root: str, *, train: int = 16, test: int = 4, size: int = 16) -> str:
  """`root/train/<class>/` and `root/test/<class>/` with distinct images; returns `root`."""
  make_folder(os.path.join(root, "train"), per_class=train, size=size)
  # Test images use other noise seeds so that no file appears in both splits.
  for label, name in enumerate(("a", "b", "c")):
    os.makedirs(os.path.join(root, "test", name), exist_ok=True)
    for i in range(test):
      Image.fromarray(class_image(label, 1000 + i, size)).save(
          os.path.join(root, "test", name, f"t{i:03d}.png"))
  return root
