"""Builds the MS-SSIM / SSIM fixtures in this folder, scored by independent implementations.

Usage (not needed to run the tests; they read only this folder and need neither torch nor
pytorch_msssim). In a scratch environment, never djpeg's own:

  python -m venv /tmp/msvenv
  /tmp/msvenv/bin/pip install torch==2.13.0 pytorch-msssim numpy pillow scikit-image
  /tmp/msvenv/bin/python tests/data/msssim/make_fixtures.py

This script does not import djpeg (whose metrics it checks): it reads the bundled sample PNGs
(djpeg/data/NAME.png, exactly what `djpeg.samples.load(NAME, uint8=True)` returns) with Pillow.

References, all computed in float64 on `uint8 / 255`:
  * `ssim`: scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=True, data_range=1, channel_axis=-1)`.
  * `ms_ssim`: pytorch_msssim's building blocks (`_fspecial_gauss_1d`, `_ssim`, which filters
    with `gaussian_filter`, a 'valid' conv2d) under djpeg's documented conventions, which differ
    from pytorch_msssim's `ms_ssim` in five ways:
      1. sample covariance (scikit-image's n / (n - 1), n = 121) instead of population
         covariance. `_ssim` hard-codes `compensation = 1.0`; since
         cs = (2 c s12 + C2) / (c s1 + c s2 + C2) = (2 s12 + C2 / c) / (s1 + s2 + C2 / c),
         the library's own `_ssim` with K2' = K2 / sqrt(c) gives the sample-covariance cs (and the
         luminance term does not involve c), so it is called unchanged with that K2;
      2. odd sizes are pooled by dropping the last row / column (`avg_pool2d` without padding)
         instead of pytorch_msssim's zero padding (`padding = size % 2`, count_include_pad);
      3. the cs (and, at the coarsest scale, SSIM) means are averaged over channels before the
         weighted product, instead of a product per channel averaged afterwards;
      4. images too small for five scales (coarsest scale under 11 pixels) use fewer scales, the
         weights truncated and renormalized (pytorch_msssim asserts a side over 160 pixels), and
         the weights are always renormalized to sum 1 (the standard five sum to 1.0001);
      5. cs is clamped at 1e-6 rather than relu'd (no fixture comes near it).
    The window is `_fspecial_gauss_1d`'s formula evaluated in float64 (the library rounds it to
    float32, which alone moves SSIM by up to 7e-7); with it, single-scale SSIM from `_ssim`
    equals scikit-image's to 1e-12 (asserted below).
  * `ms_ssim_pytorch_msssim`: plain `pytorch_msssim.ms_ssim(data_range=1)`, where it accepts
    the image (smaller side over 160: the upscaled references below), else null.
  * `ms_ssim_pytorch_msssim_algorithm`: pytorch_msssim's ms_ssim loop (with its float32
    window), copied verbatim except that its size assertion is dropped, called with djpeg's
    number of scales and the weights truncated and renormalized (its `weights` argument): the
    library's conventions 1-3 and 5 on djpeg's scales. The copy is checked equal to the plain
    call, with the plain weights, wherever that one runs.

Pairs: a reference (a bundled sample, optionally cropped, or upscaled by pixel repetition,
`np.repeat`, so that five scales fit and pytorch_msssim accepts it) and a deterministic distortion:
Pillow JPEG at a quality and chroma subsampling (stored as the .jpg bytes Pillow wrote; the tests
decode them with Pillow and check the decoded pixels' sha256), a numpy Gaussian blur or seeded
Gaussian noise (stored as PNG of the rounded uint8 pixels), or the reference itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from importlib import metadata

import numpy as np
import pytorch_msssim
import skimage
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from skimage.metrics import structural_similarity

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "..", "..", "..", "djpeg", "data")
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# Reference images: name -> (sample, crop (y0, y1, x0, x1) or None, upscale factor). The samples'
# own sizes give four scales (192x128 RGB) and three (97x75 gray, odd: pooled by dropping a row
# or column at two scales); bear_gray_x3 (291x225 gray, odd) has all five, so that plain
# pytorch_msssim (smaller side over 160) runs on it too. Few shapes: each one costs the test a
# jit compilation.
REFERENCES = {
    "limes": ("limes", None, 1),
    "houses": ("houses", None, 1),
    "castle": ("castle", None, 1),
    "bear_gray": ("bear_gray", None, 1),
    "bear_gray_x3": ("bear_gray", None, 3),
}


def _jpeg(quality, subsampling=2):
  return {"kind": "jpeg", "quality": quality, "subsampling": subsampling}


def _blur(sigma):
  return {"kind": "blur", "sigma": sigma}


def _noise(sigma, seed):
  return {"kind": "noise", "sigma": sigma, "seed": seed}


# (reference, distortion, scales argument or None)
PAIRS = (
    [("castle", _jpeg(q), None) for q in (10, 30, 50, 75, 90)]
    + [("limes", _jpeg(q, 0), None) for q in (20, 60)]
    + [("limes", _blur(1.0), None), ("limes", _noise(0.03, 1), None)]
    + [("houses", _jpeg(q), None) for q in (15, 45, 85)]
    + [("houses", _blur(2.0), None), ("houses", _noise(0.10, 2), None),
       ("houses", {"kind": "identical"}, None)]
    + [("bear_gray", _jpeg(q), None) for q in (20, 60, 90)]
    + [("bear_gray", _blur(1.2), None), ("bear_gray", _noise(0.05, 3), None)]
    + [("bear_gray", _jpeg(60), s) for s in (1, 2)]
    + [("bear_gray_x3", _jpeg(q), None) for q in (25, 75)]
)


def load_reference(name: str) -> np.ndarray:
  """uint8 `(H, W, C)` pixels of a reference image."""
  sample, crop, up = REFERENCES[name]
  pixels = np.asarray(Image.open(os.path.join(SAMPLES, f"{sample}.png")))
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  if crop is not None:
    y0, y1, x0, x1 = crop
    pixels = pixels[y0:y1, x0:x1]
  return np.repeat(np.repeat(pixels, up, axis=0), up, axis=1)


def _pillow_image(pixels):
  return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def _decode(data: bytes) -> np.ndarray:
  pixels = np.asarray(Image.open(io.BytesIO(data)))
  return pixels[..., None] if pixels.ndim == 2 else pixels


def _gaussian_blur(pixels, sigma):
  radius = int(math.ceil(3 * sigma))
  x = np.arange(-radius, radius + 1)
  k = np.exp(-x ** 2 / (2 * sigma ** 2))
  k /= k.sum()
  out = pixels.astype(np.float64)
  h, w = out.shape[:2]
  padded = np.pad(out, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
  out = sum(k[i] * padded[i:i + h] for i in range(len(k)))
  padded = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
  out = sum(k[i] * padded[:, i:i + w] for i in range(len(k)))
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def distort(reference: np.ndarray, d: dict):
  """(uint8 pixels, file bytes or None, file extension)."""
  if d["kind"] == "jpeg":
    buf = io.BytesIO()
    _pillow_image(reference).save(buf, "JPEG", quality=d["quality"], subsampling=d["subsampling"])
    data = buf.getvalue()
    return _decode(data), data, "jpg"
  if d["kind"] == "blur":
    pixels = _gaussian_blur(reference, d["sigma"])
  elif d["kind"] == "noise":
    rng = np.random.default_rng(d["seed"])
    noisy = reference / 255.0 + rng.normal(0.0, d["sigma"], reference.shape)
    pixels = np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)
  elif d["kind"] == "identical":
    return reference, None, None
  else:
    raise ValueError(d)
  buf = io.BytesIO()
  _pillow_image(pixels).save(buf, "PNG", optimize=True)
  return pixels, buf.getvalue(), "png"


def djpeg_scales(shape, scales):
  """The number of scales djpeg's documented rule uses (coarsest scale at least 11 pixels)."""
  fit = 1 + int(math.floor(math.log2(min(shape[:2]) / 11)))
  return min(scales or 5, fit, 5)


def _torch(pixels):
  return torch.from_numpy(pixels.astype(np.float64) / 255.0).permute(2, 0, 1)[None]


def _window(channels):
  """pytorch_msssim's `_fspecial_gauss_1d(11, 1.5)` in float64 (it builds it in float32, whose
  rounding alone moves SSIM by up to ~1e-6: var = E[x^2] - mu^2 cancels)."""
  coords = torch.arange(11, dtype=torch.float64) - 11 // 2
  g = torch.exp(-(coords ** 2) / (2 * 1.5 ** 2))
  g /= g.sum()
  assert torch.allclose(g.float(), _fspecial_gauss_1d(11, 1.5).flatten())
  return g.view(1, 1, 1, 11).repeat([channels, 1, 1, 1])


def reference_ms_ssim(x, y, scales):
  """djpeg's conventions (module docstring) on pytorch_msssim's `_ssim`."""
  win = _window(x.shape[1])
  c = 121 / 120
  k = (0.01, 0.03 / math.sqrt(c))   # sample covariance, see the docstring
  weights = np.array(WEIGHTS[:scales]) / sum(WEIGHTS[:scales])
  value = 1.0
  for s in range(scales):
    ssim_per_channel, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False, K=k)
    term = (ssim_per_channel if s == scales - 1 else cs).mean().item()
    value *= max(term, 1e-6) ** weights[s]
    x, y = F.avg_pool2d(x, kernel_size=2), F.avg_pool2d(y, kernel_size=2)   # floor: drops odd
  return value


def reference_ssim(x, y):
  """Single-scale SSIM from the same building blocks (cross-checks scikit-image)."""
  k = (0.01, 0.03 / math.sqrt(121 / 120))
  win = _window(x.shape[1])
  ssim_per_channel, _ = _ssim(x, y, data_range=1.0, win=win, size_average=False, K=k)
  return ssim_per_channel.mean().item()


def pytorch_msssim_algorithm(X, Y, weights):
  """pytorch_msssim.ms_ssim's loop verbatim, minus its size assertion (any number of weights)."""
  win = _fspecial_gauss_1d(11, 1.5).repeat([X.shape[1], 1, 1, 1])   # float32, as the library
  weights_tensor = X.new_tensor(weights)
  levels = weights_tensor.shape[0]
  mcs = []
  for i in range(levels):
    ssim_per_channel, cs = _ssim(X, Y, win=win, data_range=1.0, size_average=False, K=(0.01, 0.03))
    if i < levels - 1:
      mcs.append(torch.relu(cs))
      padding = [s % 2 for s in X.shape[2:]]
      X = F.avg_pool2d(X, kernel_size=2, padding=padding)
      Y = F.avg_pool2d(Y, kernel_size=2, padding=padding)
  ssim_per_channel = torch.relu(ssim_per_channel)
  mcs_and_ssim = torch.stack(mcs + [ssim_per_channel], dim=0)
  return torch.prod(mcs_and_ssim ** weights_tensor.view(-1, 1, 1), dim=0).mean().item()


def _tag(d):
  if d["kind"] == "jpeg":
    return f"jpeg_q{d['quality']}_s{d['subsampling']}"
  if d["kind"] == "blur":
    return f"blur_{d['sigma']}"
  if d["kind"] == "noise":
    return f"noise_{d['sigma']}_seed{d['seed']}"
  return d["kind"]


def main():
  for old in os.listdir(HERE):
    if old.endswith((".jpg", ".png")):
      os.remove(os.path.join(HERE, old))
  pairs = []
  for ref_name, d, scales in PAIRS:
    reference = load_reference(ref_name)
    pixels, data, ext = distort(reference, d)
    tag = _tag(d)
    pair_id = f"{ref_name}_{tag}" + (f"_scales{scales}" if scales else "")
    file = None
    if data is not None:
      file = f"{ref_name}_{tag}.{ext}"
      path = os.path.join(HERE, file)
      if not os.path.exists(path):
        with open(path, "wb") as f:
          f.write(data)
    x, y = _torch(reference), _torch(pixels)
    n = djpeg_scales(reference.shape, scales)
    a, b = reference / 255.0, pixels / 255.0
    ssim_skimage = float(structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
                                               sigma=1.5, use_sample_covariance=True,
                                               data_range=1.0))
    plain = None
    if min(reference.shape[:2]) > 160 and scales is None:
      plain = pytorch_msssim.ms_ssim(x, y, data_range=1.0).item()
    algorithm = pytorch_msssim_algorithm(x, y, [w / sum(WEIGHTS[:n]) for w in WEIGHTS[:n]])
    if plain is not None:
      copy = pytorch_msssim_algorithm(x, y, list(WEIGHTS))
      assert abs(plain - copy) < 1e-12, (pair_id, plain, copy)
    ssim_torch = reference_ssim(x, y)
    assert abs(ssim_torch - ssim_skimage) < 1e-12, (pair_id, ssim_torch, ssim_skimage)
    pairs.append({
        "id": pair_id,
        "reference": {"sample": REFERENCES[ref_name][0], "crop": REFERENCES[ref_name][1],
                      "upscale": REFERENCES[ref_name][2]},
        "distortion": d,
        "file": file,
        "shape": list(reference.shape),
        "sha256": hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest(),
        "scales": scales,
        "effective_scales": n,
        "ssim": ssim_skimage,
        "ssim_pytorch_msssim_blocks": ssim_torch,
        "ms_ssim": reference_ms_ssim(x, y, n),
        "ms_ssim_pytorch_msssim": plain,
        "ms_ssim_pytorch_msssim_algorithm": algorithm,
    })
    print(f"{pair_id:40s} scales {n}  ssim {ssim_skimage:.6f}  ms_ssim {pairs[-1]['ms_ssim']:.6f}"
          f"  pytorch_msssim {algorithm:.6f}")
  meta = {
      "about": "Expected SSIM / MS-SSIM values for tests/test_msssim_reference.py; "
               "see make_fixtures.py's docstring for the references and conventions.",
      "versions": {"torch": torch.__version__, "pytorch_msssim": metadata.version("pytorch-msssim"),
                   "scikit-image": skimage.__version__, "numpy": np.__version__,
                   "pillow": Image.__version__},
      "weights": WEIGHTS,
      "pairs": pairs,
  }
  with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")


if __name__ == "__main__":
  torch.set_default_dtype(torch.float64)
  main()
