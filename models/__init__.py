"""Flax (NNX) models for JPEG-aware learning.

  classifier.py      `ResNet`: a small ResNet for 32x32 to 224x224 images that returns logits and
                     a dict of named intermediate features; optional quality-conditioned block.
  dct_classifier.py  `DCTResNet`: classifies `djpeg.Coefficients` directly (8x8 blocks as 64
                     channels), from `djpeg.encode` or from files via `djpeg.load_coefficients`.

Models import `djpeg`, never `train`.
"""
