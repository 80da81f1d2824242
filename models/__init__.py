"""Flax (NNX) models for JPEG-aware learning.

  classifier.py      `ResNet`: a small ResNet for 32x32 to 224x224 images that returns logits and
                     a dict of named intermediate features; optional quality-conditioned block.
  dct_classifier.py  `DCTResNet`: classifies `djpeg.Coefficients` directly (8x8 blocks as 64
                     channels), from `djpeg.encode` or from files via `djpeg.load_coefficients`.
  qtable_net.py      `QTableNet`: per-image quantization tables from the DCT and a rate knob.
  saliency.py        `SaliencyNet`: a per-8x8-block importance map, the `saliency="auto"` model of
                     `djpeg.encoder.compress` (trained for MS-SSIM at a rate).

Models import `djpeg`, never `train`.
"""
