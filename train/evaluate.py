"""Accuracy on a labeled test folder compressed by real libjpeg-turbo (Pillow) at set qualities.

`jpeg_accuracy(predict, folder, qualities=(10, 20, 30, 50, 75, 90))` streams the test images
once; each batch is classified clean and after a Pillow JPEG round trip at every quality, giving
`{"clean": acc, 10: acc, ...}`. `predict` sees the decoded pixels (pixel models) or, with
`inputs="coefficients"`, the coefficients read back from the JPEG bytes by
`djpeg.load_coefficients` (DCT-domain models; their "clean" is quality 100). It also gets the
quality of each image, estimated from the file's quantization tables as a deployed model would
(clean = 100), for quality-conditioned models.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

import djpeg
from djpeg.models.dct_classifier import stack_coefficients

QUALITIES = (10, 20, 30, 50, 75, 90)
PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
_IJG_TABLES = None


def pillow_bytes(pixels: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
  """libjpeg-turbo's JPEG file of uint8 `(H, W, 3)` pixels (Pillow, baseline, standard tables)."""
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", quality=int(quality),
                               subsampling=PIL_SUBSAMPLING[subsampling])
  return buf.getvalue()


def pillow_round_trip(pixels: np.ndarray, quality: int, subsampling: str = "4:2:0"
                      ) -> tuple[np.ndarray, np.ndarray]:
  """uint8 `(B, H, W, 3)` -> (what libjpeg-turbo decodes after encoding at `quality`,
  `(B,)` float32 quality of each file as `estimate_quality` reads it from the file's tables)."""
  decoded, qualities = [], []
  for p in pixels:
    with Image.open(io.BytesIO(pillow_bytes(p, quality, subsampling))) as im:
      decoded.append(np.asarray(im))
      qualities.append(estimate_quality(np.asarray(im.quantization[0]).reshape(8, 8)))
  return np.stack(decoded), np.asarray(qualities, np.float32)


def estimate_quality(tables: np.ndarray) -> float:
  """The IJG quality (1..100) whose luma table is nearest to `tables[0]` `(8, 8)`, natural order."""
  global _IJG_TABLES
  if _IJG_TABLES is None:
    _IJG_TABLES = np.stack([np.asarray(djpeg.quality_tables(q))[0] for q in range(1, 101)])
  luma = np.asarray(tables, np.float64).reshape(-1, 8, 8)[0]
  return float(1 + np.argmin(np.abs(_IJG_TABLES - luma).sum(axis=(1, 2))))


def _inputs_for(pixels: np.ndarray, key, size: int, subsampling: str, inputs: str):
  """One padded batch of model inputs and qualities for condition `key` ("clean" or a quality).

  The quality a conditioned model gets is read from each file's tables, as a deployed model
  would; a clean (never compressed) image counts as quality 100.
  """
  if inputs == "pixels":
    if key == "clean":
      return _pad(pixels, size), np.full((size,), 100.0, np.float32)
    x, q = pillow_round_trip(pixels, key, subsampling)
    return _pad(x, size), _pad(q, size)
  coefficients = [djpeg.load_coefficients(pillow_bytes(p, 100 if key == "clean" else key,
                                                       subsampling)) for p in pixels]
  q = np.asarray([estimate_quality(c.tables) for c in coefficients], np.float32)
  return (stack_coefficients(coefficients + [coefficients[-1]] * (size - len(pixels))),
          _pad(q, size))


def _batches(folder, qualities, subsampling, inputs, batch_size, limit):
  """Yields (labels (n,), {condition: (inputs, qualities)}) per test batch."""
  if inputs not in ("pixels", "coefficients"):
    raise ValueError(f'inputs must be "pixels" or "coefficients"; got {inputs!r}.')
  if not getattr(folder, "uint8", False) or folder.drop_last or folder.epochs != 1:
    raise ValueError("the test folder must be an ImageFolder made with uint8=True, epochs=1, "
                     "drop_last=False.")
  for q in qualities:
    if not 1 <= int(q) <= 100:
      raise ValueError(f"qualities must be in 1..100; got {q}.")
  size = batch_size or folder.batch_size
  seen = 0
  for pixels, labels in folder:
    if limit is not None:
      if seen >= limit:
        break
      pixels, labels = pixels[:limit - seen], labels[:limit - seen]
    seen += len(labels)
    yield labels, {key: _inputs_for(pixels, key, size, subsampling, inputs)
                   for key in ("clean",) + tuple(qualities)}


def _score(predict, batches) -> dict:
  correct, seen = {}, 0
  for labels, conditions in batches:
    n = len(labels)
    for key, (x, q) in conditions.items():
      if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
      logits = np.asarray(predict(x, q))[:n]
      correct[key] = correct.get(key, 0) + int(np.sum(np.argmax(logits, axis=-1) == labels))
    seen += n
  if not seen:
    raise ValueError("the test folder yielded no images.")
  out = {k: v / seen for k, v in correct.items()}
  out["n"] = seen
  return out


def jpeg_accuracy(predict: Callable[[object, np.ndarray], np.ndarray], folder,
                  qualities: Sequence[int] = QUALITIES, *, subsampling: str = "4:2:0",
                  inputs: str = "pixels", batch_size: int | None = None,
                  limit: int | None = None) -> dict:
  """Top-1 accuracy clean and at each JPEG quality, streaming the test folder once.

  Args:
    predict: `(inputs, quality (B,) float32) -> logits (B, classes)`; inputs are float32 pixels
      `(B, H, W, 3)` in [0, 1], or a batched `djpeg.Coefficients` with inputs="coefficients".
      Every call has the same batch size (the last batch is padded), so a jitted predict compiles
      once per input kind. `quality` is what the file's tables say (clean: 100).
    folder: a `djpeg.train.data.ImageFolder` over the test split made with `epochs=1,
      drop_last=False, uint8=True` (and `shuffle=True` with a fixed seed if `limit` is to take a
      random subset rather than the first classes in folder order).
    qualities: JPEG qualities for Pillow (libjpeg-turbo).
    subsampling: chroma subsampling of the test JPEGs.
    inputs: "pixels" or "coefficients".
    batch_size: predict's batch size (default: the folder's).
    limit: stop after this many images (None: all).
  Returns:
    {"clean": accuracy, quality: accuracy, ...}, accuracies in [0, 1]; "n": images used.
  """
  return _score(predict, _batches(folder, qualities, subsampling, inputs, batch_size, limit))


class JpegTestSet:
  """The test split clean and Pillow-compressed, prepared once to evaluate many models.

  Same arguments as `jpeg_accuracy`; holds every condition in memory (uint8 pixels or int16
  coefficients: ~3 KB per image and condition for 32x32 RGB), so only for test sets that fit.
  """

  def __init__(self, folder, qualities: Sequence[int] = QUALITIES, *, subsampling: str = "4:2:0",
               inputs: str = "pixels", batch_size: int | None = None, limit: int | None = None):
    self.qualities, self.inputs = tuple(qualities), inputs
    self.batches = list(_batches(folder, qualities, subsampling, inputs, batch_size, limit))

  def accuracy(self, predict: Callable[[object, np.ndarray], np.ndarray]) -> dict:
    """{"clean": accuracy, quality: accuracy, ..., "n": images}, as `jpeg_accuracy`."""
    return _score(predict, self.batches)


def _pad(x: np.ndarray, size: int) -> np.ndarray:
  """Pads the leading axis to `size` by repeating the last row."""
  if len(x) == size:
    return x
  return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
