"""Feature consistency training (train.consistency), the classifiers, and the notebook.

Tiny models on 16x16 images made in tmp_path; runs share one compiled step (same structure).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os

import jax
import jax.numpy as jnp
import nbformat
import numpy as np
import pytest
from flax import nnx
from nbclient import NotebookClient
from PIL import Image

import djpeg
from djpeg.models.classifier import ResNet
from djpeg.models.dct_classifier import DCTResNet, coefficient_planes, stack_coefficients
from djpeg.train import checkpoint, consistency, data, evaluate, monitor
from djpeg.train import state as state_lib
from train_util import make_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(widths=(4, 8), blocks=(1, 1), layers=("stage2",), batch_size=8, epochs=3,
            learning_rate=1e-2, warmup_epochs=0.0, eval_batch_size=6, log_every=2,
            eval_qualities=(10, 50), checkpoint_every=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return make_dataset(str(tmp_path_factory.mktemp("ds")), train=16, test=2)


def cfg_for(dataset, out, **kw):
  return consistency.Config(data=dataset, out=str(out), **dict(TINY, **kw))


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_consistency_term_zero_when_copy_is_clean():
  cfg = consistency.Config(widths=(4, 8), blocks=(1, 1), layers=("stage1", "stage2", "pooled"))
  graphdef, params, rest = state_lib.split_model(consistency.build_model(cfg, 3))

  @functools.partial(jax.jit, static_argnames="distance")
  def terms(x, labels, q, distance):
    c = dataclasses.replace(cfg, distance=distance)
    model = nnx.merge(graphdef, params, rest)
    same = consistency.method_loss(model, x, x, labels, q, cfg=c)[1]["consistency"]
    jpeg = djpeg.jpeg(x, quality=q)
    differ = consistency.method_loss(model, x, jpeg, labels, q, cfg=c)[1]["consistency"]
    return same, differ

  x = jnp.asarray(np.random.default_rng(0).random((4, 16, 16, 3)), jnp.float32)
  for distance in consistency.DISTANCES:
    same, differ = terms(x, jnp.asarray([0, 1, 2, 0]), jnp.full((4,), 30.0), distance)
    # Zero up to the last-bit differences XLA may make between batch positions of one conv.
    assert abs(float(same)) < 1e-10 and float(differ) > 1e-4
  a = jnp.ones((2, 3, 3, 4))
  assert float(consistency.feature_distance(a, 2 * a, "cosine").max()) < 1e-6
  assert np.allclose(consistency.feature_distance(a, 3 * a, "l2"), 4.0)


def test_training_lowers_loss_and_never_reads_test(dataset, tmp_path, monkeypatch):
  read = []
  original = data.load_rgb
  monkeypatch.setattr(data, "load_rgb", lambda p: read.append(p) or original(p))
  cfg = cfg_for(dataset, tmp_path / "run")
  run = consistency.train(cfg, quiet=True)
  train_dir = os.path.realpath(os.path.join(dataset, "train")) + os.sep
  assert read and all(os.path.realpath(p).startswith(train_dir) for p in read)
  log = monitor.read_log(os.path.join(cfg.out, "metrics.csv"))
  assert log["loss"][-2:].mean() < 0.7 * log["loss"][:2].mean()
  assert log["consistency"].max() > 0
  read.clear()
  acc = consistency.evaluate_run(run, quiet=True)
  test_dir = os.path.realpath(os.path.join(dataset, "test")) + os.sep
  assert read and all(os.path.realpath(p).startswith(test_dir) for p in read)
  assert set(acc) == {"clean", 10, 50, "n"} and acc["n"] == 6


def test_validation_split_is_held_out_of_training_and_test_is_never_read(dataset, tmp_path,
                                                                         monkeypatch):
  read = []
  original = data.load_rgb
  monkeypatch.setattr(data, "load_rgb", lambda p: read.append(p) or original(p))
  cfg = cfg_for(dataset, tmp_path / "run", validation=4, epochs=1)
  run = consistency.train(cfg, quiet=True)
  held = data.ImageFolder(os.path.join(dataset, "train"), batch_size=4, holdout=4,
                          part="holdout")
  assert len(run.stream) == 36 and len(held) == 12
  assert not set(run.stream.paths) & set(held.paths)
  assert read and not set(read) & set(held.paths)
  read.clear()
  acc = consistency.evaluate_run(run, quiet=True)
  assert acc["n"] == 12 and sorted(set(read)) == sorted(held.paths)


def test_split_folders_must_be_separate(tmp_path, dataset):
  with pytest.raises(ValueError, match="train/ and test/"):
    consistency.split_folders(str(tmp_path))
  os.makedirs(tmp_path / "d")
  os.symlink(os.path.join(dataset, "train"), tmp_path / "d" / "train")
  os.symlink(os.path.join(dataset, "train"), tmp_path / "d" / "test")
  with pytest.raises(ValueError, match="overlap"):
    consistency.split_folders(str(tmp_path / "d"))


def test_resume_reproduces_uninterrupted_run(dataset, tmp_path, monkeypatch):
  full = consistency.train(cfg_for(dataset, tmp_path / "full"), quiet=True)
  cfg = cfg_for(dataset, tmp_path / "cut")
  stop = {"n": 0}
  original = data.ImageFolder.__next__

  def interrupted(self):
    stop["n"] += 1
    if stop["n"] > 6:         # dies after step 6; the last checkpoint is step 4
      raise KeyboardInterrupt
    return original(self)

  monkeypatch.setattr(data.ImageFolder, "__next__", interrupted)
  with pytest.raises(KeyboardInterrupt):
    consistency.train(cfg, quiet=True)
  monkeypatch.setattr(data.ImageFolder, "__next__", original)
  assert checkpoint.Checkpointer(os.path.join(cfg.out, "checkpoints")).latest_step() == 4
  resumed = consistency.train(cfg, quiet=True)
  assert int(resumed.state.step) == full.num_steps
  assert leaves_equal(resumed.state, full.state)
  with pytest.raises(ValueError, match="other settings"):
    consistency.train(cfg_for(dataset, tmp_path / "cut", beta=2.0), quiet=True)


def test_config_differences_ignores_bookkeeping_and_fills_new_settings():
  cfg = consistency.Config(beta=0.5, out="a", log_every=7)
  saved = json.loads(json.dumps(dataclasses.asdict(consistency.Config(out="b"))))
  del saved["validation"]                      # written before the setting existed
  assert consistency.config_differences(saved, cfg) == {}
  assert consistency.config_differences(saved, dataclasses.replace(cfg, quality_block=1)) == {
      "quality_block": (None, 1)}


def test_evaluation_reads_quality_from_the_file_tables():
  pixels = (np.random.default_rng(0).random((3, 16, 16, 3)) * 255).astype(np.uint8)
  for q in (10, 37, 90):
    decoded, qualities = evaluate.pillow_round_trip(pixels, q)
    assert qualities.tolist() == [q] * 3
    buf = io.BytesIO()
    Image.fromarray(pixels[1]).save(buf, "JPEG", quality=q)          # libjpeg-turbo, 4:2:0
    np.testing.assert_array_equal(decoded[1], np.asarray(Image.open(buf)))


def test_dct_model_same_for_encoded_and_file_coefficients(dataset):
  folder = data.ImageFolder(os.path.join(dataset, "test"), batch_size=6, shuffle=False,
                            drop_last=False, epochs=1, uint8=True)
  pixels, _ = next(folder)
  with state_lib.fast_random():
    model = DCTResNet(3, widths=(8,), blocks=(1,), rngs=nnx.Rngs(0))
  forward = nnx.jit(lambda m, c: m(c)[0])
  encoded = djpeg.encode(pixels.astype(np.float32) / 255, quality=40)
  files = []
  for p in pixels:
    buf = io.BytesIO()
    Image.fromarray(p).save(buf, "JPEG", quality=40)       # libjpeg-turbo, 4:2:0
    files.append(djpeg.load_coefficients(buf.getvalue()))
  loaded = stack_coefficients(files)
  assert loaded.components[0].dtype == np.int16
  np.testing.assert_array_equal(coefficient_planes(encoded), coefficient_planes(loaded))
  assert coefficient_planes(loaded).shape == (6, 2, 2, 192)
  np.testing.assert_array_equal(forward(model, encoded), forward(model, loaded))
  with pytest.raises(ValueError, match="one geometry"):
    stack_coefficients([files[0], djpeg.encode(np.zeros((24, 16, 3), np.float32))])
  with pytest.raises(ValueError, match="3-component"):
    model(djpeg.encode(np.zeros((2, 16, 16, 1), np.float32)))


def test_dct_training_runs(dataset, tmp_path):
  cfg = cfg_for(dataset, tmp_path / "dct", model="dct", widths=(8,), blocks=(1,),
                layers=("pooled",), epochs=1)
  result = consistency.run_and_evaluate(cfg, quiet=True)
  assert result["steps"] == 6 and 0 <= result["accuracy"]["10"] <= 1
  with open(os.path.join(cfg.out, "results.json")) as f:
    assert json.load(f)["config"]["model"] == "dct"


def test_models_and_config_errors():
  forward = nnx.jit(lambda m, x, q=None: m(x, quality=q))
  with state_lib.fast_random():
    model = ResNet(10, widths=(4,), blocks=(1,), quality_block=1, rngs=nnx.Rngs(0))
    big = ResNet(5, widths=(4, 8), blocks=(1, 1), stem="imagenet", rngs=nnx.Rngs(0))
  logits, feats = forward(model, jnp.zeros((2, 32, 32, 3)), jnp.asarray([10.0, 90.0]))
  assert logits.shape == (2, 10) and set(feats) == {"stem", "stage1", "pooled"}
  assert forward(big, jnp.zeros((1, 96, 96, 3)))[1]["stage2"].shape == (1, 12, 12, 8)
  with pytest.raises(ValueError, match="expects inputs"):
    model(jnp.zeros((2, 32, 32, 1)))
  with pytest.raises(ValueError, match="one entry per stage"):
    ResNet(10, widths=(4, 8), blocks=(1,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="method must be one of"):
    consistency.Config(method="mixup").check()
  with pytest.raises(ValueError, match="quality_range"):
    consistency.Config(quality_range=(50, 10)).check()
  with pytest.raises(ValueError, match=r"layers \['stage9'\]"):
    consistency.build_model(consistency.Config(layers=("stage9",)), 10)
  for bad in (dict(learning_rate=float("nan")), dict(learning_rate=float("inf"))):
    with pytest.raises(ValueError, match="positive and finite"):
      consistency.Config(**bad).check()
  for bad in (dict(weight_decay=-1.0), dict(warmup_epochs=-1.0), dict(beta=float("nan"))):
    with pytest.raises(ValueError, match=">= 0 and finite"):
      consistency.Config(**bad).check()
  with pytest.raises(ValueError, match="eval_limit must be at least 1"):
    consistency.Config(eval_limit=0).check()


def test_cli_reports_bad_data(tmp_path, capsys):
  assert consistency.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
  assert "train/ and test/" in capsys.readouterr().err


def test_notebook_executes(dataset, monkeypatch):
  monkeypatch.setenv("DJPEG_FC_DATA", dataset)
  monkeypatch.setenv("DJPEG_FC_SMALL", "1")
  nb = nbformat.read(os.path.join(REPO, "notebooks", "feature_consistency.ipynb"), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(REPO, "notebooks")}}).execute()
  errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
