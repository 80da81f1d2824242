"""Image folders to training batches: seeded, reproducible, resumable and streaming.

Two pipelines share one engine (`_Stream`):

* `CropStream(root, crop=..., batch_size=...)` — unlabeled: every image under `root` (any depth,
  any size, colour or gray) gives random `crop x crop` crops with random horizontal flips,
  batched as `(B, crop, crop, 3)` float32 in [0, 1]. For work that fits JPEG parameters to images
  (learned quantization tables).
* `ImageFolder(root, batch_size=...)` — labeled, one subfolder per class (torchvision's layout):
  `(images (B, H, W, 3) float32 in [0, 1], labels (B,) int32)`. Images must share one size unless
  `resize=` is given (shorter side scaled to `resize`, then a centre crop to `resize x resize`);
  optional training augmentation: `flip=True`, `pad_crop=p` (pad by p, reflect, random crop back).

Both are iterators over an endless sequence of epochs (or one pass with `epochs=1`). Each epoch
visits every image once in an order drawn from `(seed, epoch)`; the random crop and flip of each
batch are drawn from `(seed, epoch, position)`, so the batches depend on nothing but the seed and
the file list. `get_state()` returns `{"seed", "epoch", "position"}` (JSON-serializable) and
`set_state(state)` continues from it: a resumed run sees exactly the batches an uninterrupted run
would. Only the file list lives in memory; images are read as their batch is assembled.

Unreadable images are skipped with a warning and counted (`skipped`); the batch is filled from the
next images of the same order, so the skip is deterministic too. Images are read by
`djpeg.images.load_image` (gray repeated to RGB). Multi-host: pass `process_index` and
`process_count`; every process draws the same order and keeps its slice of each global batch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from djpeg.images import load_image

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def list_images(root: str, extensions: Sequence[str] = EXTENSIONS) -> list[str]:
  """Paths of the image files under `root` (recursively), sorted. Raises if there are none."""
  if not os.path.isdir(root):
    raise ValueError(f"image folder {root!r} does not exist or is not a folder.")
  paths = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    paths += [os.path.join(dirpath, f) for f in sorted(filenames)
              if f.lower().endswith(tuple(extensions)) and not f.startswith(".")]
  if not paths:
    raise ValueError(f"image folder {root!r} holds no images (looked for {', '.join(extensions)}).")
  return paths


def list_classes(root: str, extensions: Sequence[str] = EXTENSIONS
                 ) -> tuple[list[str], list[str], np.ndarray]:
  """(class names, image paths, labels (N,) int32) of an ImageFolder tree (one folder per class)."""
  if not os.path.isdir(root):
    raise ValueError(f"image folder {root!r} does not exist or is not a folder.")
  classes = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
  if not classes:
    raise ValueError(f"image folder {root!r} has no class subfolders: a labeled dataset needs one "
                     "subfolder per class (root/<class>/<image>).")
  paths, labels = [], []
  for label, name in enumerate(classes):
    try:
      found = list_images(os.path.join(root, name), extensions)
    except ValueError:
      raise ValueError(f"class {name!r} in {root!r} has no images (looked for "
                       f"{', '.join(extensions)}).") from None
    paths += found
    labels += [label] * len(found)
  return classes, paths, np.asarray(labels, np.int32)


def holdout_mask(labels: np.ndarray, per_class: int, classes: Sequence[str] = ()) -> np.ndarray:
  """`(N,)` bool: `per_class` images of each class, drawn once with a fixed seed.

  The choice depends only on the labels (the sorted file list), so every run, whatever its
  seed, holds out the same images. Raises if a class has no more than `per_class` images.
  """
  if per_class < 0:
    raise ValueError(f"holdout must be >= 0 images per class; got {per_class}.")
  labels = np.asarray(labels)
  mask = np.zeros(len(labels), bool)
  rng = np.random.default_rng(0)
  for c in range(int(labels.max()) + 1 if len(labels) else 0):
    members = np.flatnonzero(labels == c)
    if len(members) <= per_class:
      name = classes[c] if c < len(classes) else c
      raise ValueError(f"class {name!r} has {len(members)} images; holding out {per_class} "
                       "would leave none to train on.")
    mask[rng.choice(members, per_class, replace=False)] = True
  return mask


def load_rgb(path: str) -> np.ndarray:
  """Reads one image file as `(H, W, 3)` uint8 RGB (`djpeg.images.load_image`, gray repeated).

  Raises ValueError if unreadable or without a faithful 8-bit reading (transparency, CMYK).
  """
  pixels = load_image(path)
  return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _resize_short(pixels: np.ndarray, short: int) -> np.ndarray:
  """Scales `(H, W, 3)` uint8 so that its shorter side is `short` (bicubic)."""
  h, w = pixels.shape[:2]
  if min(h, w) == short:
    return pixels
  scale = short / min(h, w)
  size = (max(short, round(w * scale)), max(short, round(h * scale)))
  return np.asarray(Image.fromarray(pixels).resize(size, Image.BICUBIC))


def _center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
  h, w = pixels.shape[:2]
  top, left = (h - size) // 2, (w - size) // 2
  return pixels[top:top + size, left:left + size]


def image_size(path: str) -> tuple[int, int] | None:
  """(height, width) from the file header, or None if the file does not open as an image."""
  try:
    with Image.open(path) as image:
      return image.size[1], image.size[0]
  except (OSError, ValueError, Image.DecompressionBombError):
    return None


class _Stream:
  """The engine: an epoch-ordered, seeded, resumable walk over a list of files, in batches.

  Subclasses define `_example(index, rng)` (one example as numpy arrays, or raise OSError /
  ValueError for an unreadable file) and `_collate(examples)`.
  """

  def __init__(self, paths: list[str], *, batch_size: int, seed: int, shuffle: bool,
               drop_last: bool, epochs: int | None, process_index: int, process_count: int):
    if batch_size < 1:
      raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
    if process_count < 1 or not 0 <= process_index < process_count:
      raise ValueError(f"process_index must be in [0, process_count); got {process_index} of "
                       f"{process_count}.")
    if batch_size % process_count:
      raise ValueError(f"the global batch size {batch_size} must divide evenly among "
                       f"{process_count} processes.")
    if drop_last and len(paths) < batch_size:
      raise ValueError(f"{len(paths)} images are fewer than one batch of {batch_size}; lower "
                       "the batch size (or, from Python, pass drop_last=False).")
    self.paths = paths
    self.batch_size = batch_size
    self.seed = int(seed)
    self.shuffle = shuffle
    self.drop_last = drop_last
    self.epochs = epochs
    self.process_index = process_index
    self.process_count = process_count
    self.epoch = 0
    self.position = 0
    self.skipped = 0
    self._bad: set[int] = set()
    self._order_epoch = -1
    self._order = np.arange(0)

  def __len__(self) -> int:
    """Images in one epoch."""
    return len(self.paths)

  @property
  def steps_per_epoch(self) -> int:
    """Batches in one epoch (fewer if images turn out to be unreadable)."""
    n = len(self.paths)
    return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

  def get_state(self) -> dict:
    """Where the stream stands: {"seed", "epoch", "position"} (JSON-serializable)."""
    return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

  def set_state(self, state: dict) -> None:
    """Continues from a `get_state()` result; the next batch is the one that came next then."""
    try:
      seed, epoch, position = int(state["seed"]), int(state["epoch"]), int(state["position"])
    except (KeyError, TypeError, ValueError):
      raise ValueError(f"iterator state must be a dict with integer 'seed', 'epoch' and "
                       f"'position'; got {state!r}.") from None
    if seed != self.seed:
      raise ValueError(f"iterator state was saved with seed {seed}, this stream has seed "
                       f"{self.seed}: resuming would not reproduce the run.")
    if epoch < 0 or not 0 <= position <= len(self.paths):
      raise ValueError(f"iterator state out of range: epoch {epoch}, position {position} of "
                       f"{len(self.paths)} images.")
    self.epoch, self.position = epoch, position

  def _epoch_order(self) -> np.ndarray:
    if self._order_epoch != self.epoch:
      n = len(self.paths)
      self._order = (np.random.default_rng([self.seed, self.epoch]).permutation(n)
                     if self.shuffle else np.arange(n))
      self._order_epoch = self.epoch
    return self._order

  def __iter__(self) -> Iterator:
    return self

  def __next__(self):
    n, size = len(self.paths), self.batch_size
    while True:
      readable = n - len(self._bad)
      if readable < (size if self.drop_last else 1):
        # Else every epoch would be skipped in turn, for ever.
        raise ValueError(f"only {readable} of the {n} images can be read, fewer than one batch "
                         f"of {size}; add images or lower the batch size "
                         f"({self.skipped} unreadable: see the warnings).")
      if self.epochs is not None and self.epoch >= self.epochs:
        raise StopIteration
      if self.position >= n or (self.drop_last and n - self.position < size):
        self.epoch, self.position = self.epoch + 1, 0
        continue
      order = self._epoch_order()
      rng = np.random.default_rng([self.seed, self.epoch, self.position, 1])
      examples, position = [], self.position
      while len(examples) < size and position < n:
        index = int(order[position])
        position += 1
        if index in self._bad:
          continue
        try:
          examples.append(self._example(index, rng))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
          self._bad.add(index)
          self.skipped += 1
          warnings.warn(f"skipping unreadable image {self.paths[index]!r} ({e}); "
                        f"{self.skipped} skipped so far.", stacklevel=2)
      self.position = position
      if len(examples) < size and self.drop_last:
        continue   # unreadable images left too few for a full batch: next epoch
      if not examples:
        continue
      # Every process draws the same examples (same order, same rng) and keeps its slice, so the
      # global batch is the same for any number of processes.
      local = len(examples) // self.process_count
      lo = self.process_index * local
      return self._collate(examples[lo:lo + local] if self.process_count > 1 else examples)

  def _example(self, index: int, rng: np.random.Generator):
    raise NotImplementedError

  def _collate(self, examples):
    raise NotImplementedError


class CropStream(_Stream):
  """Random crops with random flips from every image under `root` (unlabeled).

  Args:
    root: folder searched recursively for PNG/JPEG/TIFF/BMP files.
    crop: side of the square crops in pixels. Images with a shorter side below `crop` are scaled up
      to it first.
    batch_size: crops per batch (global, over all processes).
    seed: determines the order, crops and flips.
    crops_per_image: crops taken from each image it is read (one image read, several crops).
    flip: random horizontal flips.
    epochs: stop after this many epochs (None: endless).
    process_index, process_count: this process's slice of each batch (multi-host).
  Yields:
    `(B, crop, crop, 3)` float32 in [0, 1], B = batch_size / process_count.
  """

  def __init__(self, root: str, *, crop: int, batch_size: int, seed: int = 0,
               crops_per_image: int = 1, flip: bool = True, epochs: int | None = None,
               extensions: Sequence[str] = EXTENSIONS, process_index: int = 0,
               process_count: int = 1):
    if crop < 1:
      raise ValueError(f"crop must be a positive number of pixels; got {crop}.")
    if crops_per_image < 1 or batch_size % crops_per_image:
      raise ValueError(f"crops_per_image must be positive and divide batch_size {batch_size}; "
                       f"got {crops_per_image}.")
    self.crop = crop
    self.crops_per_image = crops_per_image
    self.flip = flip
    paths = list_images(root, extensions)
    # The engine counts images; each image read gives crops_per_image crops of the batch.
    super().__init__(paths, batch_size=batch_size // crops_per_image, seed=seed, shuffle=True,
                     drop_last=True, epochs=epochs, process_index=process_index,
                     process_count=process_count)

  def _example(self, index, rng):
    pixels = load_rgb(self.paths[index])
    if min(pixels.shape[:2]) < self.crop:
      pixels = _resize_short(pixels, self.crop)
    h, w = pixels.shape[:2]
    crops = []
    for _ in range(self.crops_per_image):
      top, left = rng.integers(0, h - self.crop + 1), rng.integers(0, w - self.crop + 1)
      c = pixels[top:top + self.crop, left:left + self.crop]
      if self.flip and rng.random() < 0.5:
        c = c[:, ::-1]
      crops.append(c)
    return crops

  def _collate(self, examples):
    return np.stack([c for crops in examples for c in crops]).astype(np.float32) / 255.0


class ImageFolder(_Stream):
  """Labeled batches from `root/<class>/<image>`: classes are the sorted subfolder names.

  Args:
    root: the dataset folder (e.g. `cifar10/train`).
    batch_size: images per batch (global, over all processes).
    seed: determines the order and the augmentation.
    shuffle: a new order every epoch (training); False visits files in sorted order (evaluation).
    drop_last: drop the last partial batch of an epoch (keeps shapes static for `jit`).
    epochs: stop after this many epochs (None: endless). Evaluation: `epochs=1, shuffle=False,
      drop_last=False`.
    resize: scale the shorter side to this and centre-crop to `resize x resize`. Without it all
      images must have one size (checked from the headers when the folder is opened).
    flip: random horizontal flips. pad_crop: pad by this many pixels (reflect) and crop back at a
      random offset (CIFAR-style augmentation); 0 for none.
    uint8: yield uint8 pixels instead of float32 in [0, 1] (e.g. to JPEG-compress with Pillow).
    holdout: images per class set aside as a validation split (`holdout_mask`: a fixed choice,
      the same whatever `seed`); 0 for none.
    part: with `holdout`, "rest" yields the other images (training), "holdout" only those.
    process_index, process_count: this process's slice of each batch (multi-host).
  Yields:
    `(images (B, H, W, 3), labels (B,) int32)`, B = batch_size / process_count.
  Attributes:
    classes: the class names; `labels` (N,) and `paths` of all images.
  """

  def __init__(self, root: str, *, batch_size: int, seed: int = 0, shuffle: bool = True,
               drop_last: bool = True, epochs: int | None = None, resize: int | None = None,
               flip: bool = False, pad_crop: int = 0, uint8: bool = False,
               holdout: int = 0, part: str = "rest",
               extensions: Sequence[str] = EXTENSIONS, process_index: int = 0,
               process_count: int = 1):
    if resize is not None and resize < 1:
      raise ValueError(f"resize must be a positive number of pixels or None; got {resize}.")
    if pad_crop < 0:
      raise ValueError(f"pad_crop must be >= 0; got {pad_crop}.")
    if part not in ("rest", "holdout"):
      raise ValueError(f"part must be 'rest' or 'holdout'; got {part!r}.")
    self.classes, paths, self.labels = list_classes(root, extensions)
    if holdout:
      keep = holdout_mask(self.labels, holdout, self.classes) == (part == "holdout")
      paths = [p for p, k in zip(paths, keep) if k]
      self.labels = self.labels[keep]
    self.root = root
    self.resize = resize
    self.flip = flip
    self.pad_crop = pad_crop
    self.uint8 = uint8
    self.image_shape = self._check_sizes(paths) if resize is None else (resize, resize)
    super().__init__(paths, batch_size=batch_size, seed=seed, shuffle=shuffle,
                     drop_last=drop_last, epochs=epochs, process_index=process_index,
                     process_count=process_count)

  @property
  def num_classes(self) -> int:
    return len(self.classes)

  def _check_sizes(self, paths: list[str]) -> tuple[int, int]:
    """The one (H, W) all readable images share; a clear error if they differ."""
    sizes: dict[tuple[int, int], str] = {}
    for path in paths:
      size = image_size(path)
      if size is not None and size not in sizes:
        sizes[size] = path
        if len(sizes) > 1:
          (s0, p0), (s1, p1) = list(sizes.items())[:2]
          raise ValueError(
              f"images in {self.root!r} have different sizes ({s0[0]}x{s0[1]} {p0!r}, {s1[0]}x"
              f"{s1[1]} {p1!r}); pass resize=N to scale and centre-crop them all to NxN.")
    if not sizes:
      raise ValueError(f"none of the {len(paths)} images in {self.root!r} can be read.")
    return next(iter(sizes))

  def _example(self, index, rng):
    pixels = load_rgb(self.paths[index])
    if self.resize is not None:
      pixels = _center_crop(_resize_short(pixels, self.resize), self.resize)
    elif pixels.shape[:2] != self.image_shape:
      raise ValueError(f"size {pixels.shape[:2]} differs from the dataset's {self.image_shape}")
    if self.pad_crop:
      p = self.pad_crop
      padded = np.pad(pixels, ((p, p), (p, p), (0, 0)), mode="reflect")
      top, left = rng.integers(0, 2 * p + 1, size=2)
      pixels = padded[top:top + pixels.shape[0], left:left + pixels.shape[1]]
    if self.flip and rng.random() < 0.5:
      pixels = pixels[:, ::-1]
    return pixels, self.labels[index]

  def _collate(self, examples):
    images = np.stack([e[0] for e in examples])
    if not self.uint8:
      images = images.astype(np.float32) / 255.0
    return images, np.asarray([e[1] for e in examples], np.int32)


def centre_crops(root: str, crop: int, count: int) -> np.ndarray:
  """Centre crops of the first `count` readable images at least `crop` pixels wide (a fixed set
  for monitoring progress)."""
  crops, unreadable, small = [], 0, 0
  for path in list_images(root):
    if len(crops) == count:
      break
    try:
      pixels = load_rgb(path)
    except (OSError, ValueError, SyntaxError):
      unreadable += 1   # the training stream warns about and counts unreadable images
      continue
    if min(pixels.shape[:2]) < crop:
      small += 1
      continue
    top, left = (pixels.shape[0] - crop) // 2, (pixels.shape[1] - crop) // 2
    crops.append(pixels[top:top + crop, left:left + crop])
  if not crops:
    raise ValueError(f"no image in {root!r} gives a {crop}x{crop} crop: {unreadable} cannot be "
                     f"read, {small} are smaller.")
  return np.stack(crops).astype(np.float32) / 255
