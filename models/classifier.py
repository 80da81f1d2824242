"""A small Flax NNX ResNet image classifier that exposes its intermediate features.

`ResNet(num_classes, rngs=...)` maps images `(B, H, W, C)` float in [0, 1] to
`(logits, features)`: `logits` `(B, num_classes)` and `features` a dict of named feature maps
("stem", "stage1", ..., "pooled"), which is what feature consistency training compares between a
clean image and its JPEG copy. The default stem suits 32x32 inputs (CIFAR); `stem="imagenet"`
(a strided 7x7 convolution and max pooling) suits 96x96 to 224x224 inputs.

An optional quality-conditioned residual block (`quality_block=i`, after stage i) modulates the
features by the JPEG quality of the input (FiLM: a per-channel scale and shift computed from the
quality); its last convolution starts at zero, so the block starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

STEMS = ("cifar", "imagenet", "none")


def _bn(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  # momentum 0.9: the running statistics settle within the few hundred steps of a short run.
  return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, rngs=rngs)


class ResidualBlock(nnx.Module):
  """Pre-activation-free basic block: conv-BN-ReLU-conv-BN plus a (projected) shortcut, ReLU."""

  def __init__(self, in_features: int, out_features: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(in_features, out_features, (3, 3), strides=stride, use_bias=False,
                          rngs=rngs)
    self.bn1 = _bn(out_features, rngs)
    self.conv2 = nnx.Conv(out_features, out_features, (3, 3), use_bias=False, rngs=rngs)
    self.bn2 = _bn(out_features, rngs)
    if stride != 1 or in_features != out_features:
      self.proj = nnx.Conv(in_features, out_features, (1, 1), strides=stride, use_bias=False,
                           rngs=rngs)
      self.proj_bn = _bn(out_features, rngs)
    else:
      self.proj = None
      self.proj_bn = None

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    y = self.bn2(self.conv2(y), use_running_average=not train)
    shortcut = x if self.proj is None else self.proj_bn(self.proj(x), use_running_average=not train)
    return nnx.relu(y + shortcut)


class QualityBlock(nnx.Module):
  """Residual block conditioned on the JPEG quality: x + conv(relu(FiLM_q(BN(conv(x))))).

  The quality enters as q / 100 in [0, 1] (a clean image counts as quality 100).
  """

  def __init__(self, features: int, *, hidden: int = 32, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(features, features, (3, 3), use_bias=False, rngs=rngs)
    self.bn = _bn(features, rngs)
    self.embed = nnx.Linear(1, hidden, rngs=rngs)
    self.film = nnx.Linear(hidden, 2 * features, kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.conv2 = nnx.Conv(features, features, (3, 3), kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x: jax.Array, quality: jax.Array, *, train: bool) -> jax.Array:
    q = jnp.reshape(jnp.asarray(quality, jnp.float32) / 100.0, (-1, 1))
    scale, shift = jnp.split(self.film(nnx.relu(self.embed(q))), 2, axis=-1)
    y = self.bn(self.conv1(x), use_running_average=not train)
    y = y * (1.0 + scale[:, None, None, :]) + shift[:, None, None, :]
    return x + self.conv2(nnx.relu(y))


class ResNet(nnx.Module):
  """ResNet for 32x32 to 224x224 images, returning logits and named intermediate features.

  Args:
    num_classes: output logits.
    widths: channels of each stage; blocks: residual blocks per stage (same length).
    strides: stride of each stage's first block (default 1, then 2).
    in_channels: 3 (RGB) or 1 (gray); any count for non-image inputs (e.g. DCT planes).
    stem: "cifar" (3x3 conv), "imagenet" (7x7 stride-2 conv and 3x3 stride-2 max pooling, for
      inputs from ~96x96 up) or "none" (a 1x1 conv, for inputs that are already features).
    quality_block: insert a `QualityBlock` after this stage (1-based), or None.
    normalize: map [0, 1] pixels to roughly zero mean and unit spread first (off for features).
    rngs: `nnx.Rngs` for the initial parameters.
  """

  def __init__(self, num_classes: int, *, widths: Sequence[int] = (16, 32, 64),
               blocks: Sequence[int] = (1, 1, 1), strides: Sequence[int] | None = None,
               in_channels: int = 3, stem: str = "cifar", quality_block: int | None = None,
               normalize: bool = True, rngs: nnx.Rngs):
    widths, blocks = tuple(widths), tuple(blocks)
    strides = tuple(strides) if strides is not None else (1,) + (2,) * (len(widths) - 1)
    if num_classes < 1:
      raise ValueError(f"num_classes must be at least 1; got {num_classes}.")
    if not widths or len(blocks) != len(widths) or len(strides) != len(widths):
      raise ValueError(f"widths, blocks and strides need one entry per stage; got widths={widths}, "
                       f"blocks={blocks}, strides={strides}.")
    if min(widths) < 1 or min(blocks) < 1 or min(strides) < 1:
      raise ValueError(f"widths, blocks and strides must be positive; got {widths}, {blocks}, "
                       f"{strides}.")
    if stem not in STEMS:
      raise ValueError(f"stem must be one of {STEMS}; got {stem!r}.")
    if quality_block is not None and not 1 <= quality_block <= len(widths):
      raise ValueError(f"quality_block must be a stage number in 1..{len(widths)} or None; got "
                       f"{quality_block}.")
    self.stem_kind = stem
    self.normalize = normalize
    self.in_channels = in_channels
    kernel = {"cifar": (3, 3), "imagenet": (7, 7), "none": (1, 1)}[stem]
    self.stem = nnx.Conv(in_channels, widths[0], kernel, strides=2 if stem == "imagenet" else 1,
                         use_bias=False, rngs=rngs)
    self.stem_bn = _bn(widths[0], rngs)
    stages = []
    features = widths[0]
    for width, count, stride in zip(widths, blocks, strides):
      stage = []
      for b in range(count):
        stage.append(ResidualBlock(features, width, stride if b == 0 else 1, rngs=rngs))
        features = width
      stages.append(nnx.List(stage))
    self.stages = nnx.List(stages)
    self.quality_index = quality_block
    self.quality = (QualityBlock(widths[quality_block - 1], rngs=rngs)
                    if quality_block is not None else None)
    self.head = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False, quality: jax.Array | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x `(B, H, W, in_channels)` -> logits `(B, num_classes)`, features {name: `(B, ...)`}.

    `quality` `(B,)` (1..100, clean = 100) feeds the quality block; None means clean.
    """
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"ResNet expects inputs (B, H, W, {self.in_channels}); got {x.shape}.")
    if self.normalize:
      x = (x - 0.5) / 0.25
    features = {}
    h = nnx.relu(self.stem_bn(self.stem(x), use_running_average=not train))
    if self.stem_kind == "imagenet":
      h = nnx.max_pool(h, (3, 3), strides=(2, 2), padding="SAME")
    features["stem"] = h
    for i, stage in enumerate(self.stages, start=1):
      for block in stage:
        h = block(h, train=train)
      if self.quality is not None and i == self.quality_index:
        q = jnp.full((x.shape[0],), 100.0) if quality is None else quality
        h = self.quality(h, q, train=train)
      features[f"stage{i}"] = h
    pooled = jnp.mean(h, axis=(1, 2))
    features["pooled"] = pooled
    return self.head(pooled), features


def feature_names(model: ResNet) -> tuple[str, ...]:
  """The keys of the feature dict `model` returns, in order."""
  return ("stem",) + tuple(f"stage{i}" for i in range(1, len(model.stages) + 1)) + ("pooled",)
