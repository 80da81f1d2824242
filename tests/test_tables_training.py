"""Learning tables: the family and QTableNet train, resume exactly, and always give valid tables."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import djpeg
from djpeg.models.params import load_params
from djpeg.models.qtable_net import QTableNet, predict_tables
from djpeg.train import tables as train_tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(root, count=6):
  """`count` 64x64 photo crops (from the bundled samples) as PNG files in `root`."""
  os.makedirs(root, exist_ok=True)
  photos = [djpeg.samples.load(n, uint8=True) for n in ("limes", "houses", "castle")]
  for i in range(count):
    photo = photos[i % 3]
    top, left = 64 * (i // 3 % 2), 64 * (i // 6 % 3)
    Image.fromarray(photo[top:top + 64, left:left + 64]).save(os.path.join(root, f"img{i}.png"))
  return str(root)


def args_for(kind, data, out, steps, **extra):
  args = dict(kind=kind, data=data, out=str(out), steps=steps, batch=2, crop=48,
              learning_rate=5.0 if kind == "family" else 3e-3, width=8, seed=0, eval_every=steps,
              checkpoint_every=2, log_every=1, val_images=2)
  args.update(extra)
  return train_tables.Config(**args)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return make_folder(tmp_path_factory.mktemp("images"))


def losses(out, key="loss"):
  import csv
  name = "validation.csv" if key == "validation_loss" else "metrics.csv"
  with open(os.path.join(out, name)) as f:
    return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


@pytest.mark.parametrize("kind", ["family", "net"])
def test_a_few_steps_lower_the_loss_and_export(folder, tmp_path, kind):
  out = tmp_path / kind
  train_tables.run(args_for(kind, folder, out, steps=12, checkpoint_every=12))
  validation = losses(out, "validation_loss")      # fixed crops and lambdas: step 0, step 12
  assert len(validation) == 2 and validation[1] < validation[0], validation
  if kind == "family":
    family = djpeg.tables.load_table_family(str(out / "family.json"))
    assert family["tables"].shape == (12, 3, 8, 8)
    assert family["tables"].min() >= 1 and family["tables"].max() <= 255
  else:
    net = load_params(QTableNet(width=8, rngs=__import__("flax").nnx.Rngs(1)),
                      str(out / "qtable_net.npz"))
    assert np.all(np.isfinite(net.out.kernel[...]))


def test_resume_reproduces_the_uninterrupted_run(folder, tmp_path):
  straight, split = tmp_path / "straight", tmp_path / "split"
  train_tables.run(args_for("family", folder, straight, steps=6))
  train_tables.run(args_for("family", folder, split, steps=4))       # "interrupted" at step 4
  train_tables.run(args_for("family", folder, split, steps=6))       # the same command again
  a = djpeg.tables.load_table_family(str(straight / "family.json"))["tables"]
  b = djpeg.tables.load_table_family(str(split / "family.json"))["tables"]
  np.testing.assert_array_equal(a, b)
  assert losses(straight)[-2:] == losses(split)[-2:]


@pytest.mark.parametrize("image", [np.zeros((1, 1, 3)), np.ones((7, 9, 3)), np.zeros((64, 48, 3)),
                                   np.random.default_rng(0).random((33, 50, 3))],
                         ids=["1x1", "white", "black", "noise"])
def test_predicted_tables_are_always_valid(image):
  net = QTableNet(width=8, rngs=__import__("flax").nnx.Rngs(0))
  for target in (dict(lmbda=1e-4), dict(lmbda=10.0), dict(bpp=1.0), dict(psnr=40.0)):
    tables = predict_tables(image.astype(np.float32), net=net, **target)
    assert tables.shape == (3, 8, 8) and tables.dtype == np.int32
    assert tables.min() >= 1 and tables.max() <= 255
  big = net(djpeg.transform(np.full((2, 16, 16, 3), 0.5, np.float32)), jnp.array([-50.0, 50.0]))
  assert np.all(np.isfinite(big)) and big.min() >= 1 and big.max() <= 255


def test_shipped_network_beats_annex_k(colour_batch):
  """The packaged QTableNet: smaller files than the standard tables at the same PSNR."""
  from djpeg.models.qtable_net import pretrained
  pretrained()   # raises clearly if the package lacks it
  pixels = colour_batch[0]
  image = pixels.astype(np.float32) / 255
  standard = djpeg.dumps(pixels, quality=75)
  target = djpeg.metrics.psnr(djpeg.decode(djpeg.load_coefficients(standard)), image)
  tables = predict_tables(image, psnr=float(target))
  learned = djpeg.dumps(djpeg.encode(image, tables=tables))
  reached = djpeg.metrics.psnr(djpeg.decode(djpeg.load_coefficients(learned)), image)
  assert reached >= target - 0.15 and len(learned) < 0.95 * len(standard)


def test_sharded_step_equals_single_device_step(folder):
  """Four CPU devices (a subprocess: the device count is fixed when jax starts)."""
  code = f"""
import os, sys
sys.path.insert(0, {REPO!r})
import numpy as np, jax, optax
from djpeg.train import parallel, state as state_lib, tables as T
from djpeg.train.data import CropStream
assert len(jax.devices()) == 4
batch = next(CropStream({folder!r}, crop=32, batch_size=4, seed=3))
for kind in ("family", "net"):
  model = T.build_model(kind, 0, 8)
  tx = optax.adam(0.01)
  graphdef, state = state_lib.create_state(model, tx, seed=0)
  loss = T.family_loss if kind == "family" else T.net_loss
  step = state_lib.make_train_step(graphdef, tx, loss)
  single, m1 = jax.jit(step)(state, batch)
  mesh = parallel.data_mesh()
  sharded, m2 = parallel.parallel_step(step, mesh, donate=False)(parallel.replicate(state, mesh), batch)
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)
print("ok")
"""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        timeout=600)
  assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_bad_data_and_checkpoints(tmp_path, folder):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="holds no images"):
    train_tables.run(args_for("family", str(empty), tmp_path / "a", steps=2))
  with pytest.raises(ValueError, match="does not exist"):
    train_tables.run(args_for("family", str(tmp_path / "nope"), tmp_path / "b", steps=2))
  # An unreadable image is skipped with a warning and counted; training goes on.
  broken = make_folder(tmp_path / "broken", count=5)
  with open(os.path.join(broken, "bad.png"), "wb") as f:
    f.write(b"not a png")
  with pytest.warns(UserWarning, match="skipping unreadable image"):
    train_tables.run(args_for("family", broken, tmp_path / "c", steps=4))
  # A corrupt checkpoint: a clear error, and no half-written state is taken for a good one.
  out = tmp_path / "d"
  train_tables.run(args_for("family", folder, out, steps=2))
  step_dir = out / "checkpoints" / "2"
  for root, _, files in os.walk(step_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  from djpeg.train.checkpoint import CheckpointError
  with pytest.raises(CheckpointError, match="corrupt"):
    train_tables.run(args_for("family", folder, out, steps=4))


def test_table_family_files(tmp_path, colour_batch):
  tables = np.stack([np.asarray(djpeg.quality_tables(q))[[0, 1, 1]] for q in (30, 60, 90)])
  path = str(tmp_path / "f.json")
  djpeg.tables.save_table_family(path, tables, [0.001, 0.01, 0.1])
  family = djpeg.tables.load_table_family(path)
  np.testing.assert_array_equal(family["tables"], tables)
  shipped = djpeg.tables.load_table_family("learned")
  assert shipped["tables"].min() >= 1 and len(shipped["tables"]) >= 8
  # The CLI writes exactly the level's tables.
  from djpeg.cli import main
  src, dst = str(tmp_path / "in.png"), str(tmp_path / "out.jpg")
  Image.fromarray(colour_batch[0]).save(src)
  assert main(["encode", src, dst, "--tables", path, "--level", "2", "--quiet"]) == 0
  np.testing.assert_array_equal(djpeg.load_coefficients(dst).tables, tables[1])
  for bad in ('{"format": "other"}', '{"format": "djpeg-table-family", "version": 2}', "{"):
    with open(path, "w") as f:
      f.write(bad)
    with pytest.raises(ValueError, match="table family"):
      djpeg.tables.load_table_family(path)
  # Fields that had been taken without a look: an unknown subsampling, true as a step of 1,
  # levels numbered out of order, a short table (numpy's "inhomogeneous shape"), no levels.
  import json
  djpeg.tables.save_table_family(path, tables, [0.001, 0.01, 0.1])
  with open(path) as f:
    good = json.load(f)

  def broken(change):
    data = json.loads(json.dumps(good))
    change(data)
    with open(path, "w") as f:
      json.dump(data, f)
  cases = [(lambda d: d.update(subsampling="9:9:9"), "subsampling '9:9:9' is not one of"),
           (lambda d: d["levels"][0]["tables"][1].__setitem__(0, True), "not all numbers"),
           (lambda d: d["levels"][1].update(level=1), "level record 2 is numbered 1"),
           (lambda d: d["levels"][2]["tables"][0].pop(), "level 3 needs 1 or 3 tables of 64 "
                                                         "numbers each; got 191 entries"),
           (lambda d: d.update(levels=[]), "no levels")]
  for change, message in cases:
    broken(change)
    with pytest.raises(ValueError, match=message):
      djpeg.tables.load_table_family(path)


def test_a_run_resumes_only_as_itself(tmp_path, folder):
  out = tmp_path / "run"
  train_tables.run(args_for("family", folder, out, steps=2))
  with pytest.raises(ValueError, match=r"other settings: batch 2 \(now 4\), crop 48 \(now 64\)"):
    train_tables.run(args_for("family", folder, out, steps=4, batch=4, crop=64))
  with pytest.raises(ValueError, match="at step 2, past the 1 steps asked for"):
    train_tables.run(args_for("family", folder, out, steps=1))
  with pytest.raises(ValueError, match=r"kind 'family' \(now 'net'\)"):
    train_tables.run(args_for("net", folder, out, steps=4))
  train_tables.run(args_for("family", folder, out, steps=3, eval_every=3, log_every=3))


@pytest.mark.parametrize("setting", [dict(eval_every=0), dict(eval_every=-1), dict(log_every=0),
                                     dict(val_images=0), dict(checkpoint_every=-2),
                                     # These two had failed deep in numpy or Flax, unnamed.
                                     dict(seed=-1), dict(width=0)])
def test_bad_run_settings_are_refused(setting, tmp_path, folder):
  with pytest.raises(ValueError, match=f"{next(iter(setting))} must be"):
    args_for("net", folder, tmp_path / "x", steps=2, **setting).check()


def test_too_few_readable_images_is_an_error_not_a_hang(tmp_path):
  # One good image and one broken, in batches of two: every epoch came up one short and the
  # stream went on to the next, for ever.
  import threading
  from djpeg.train.data import CropStream
  root = make_folder(tmp_path / "imgs", count=1)
  with open(os.path.join(root, "broken.png"), "wb") as f:
    f.write(b"not a png")
  stream = CropStream(root, crop=32, batch_size=2)
  outcome = []

  def draw():
    try:
      next(stream)
    except ValueError as e:
      outcome.append(str(e))
  thread = threading.Thread(target=draw, daemon=True)
  thread.start()
  thread.join(120)                                  # a hang guard, not a timing
  assert outcome and "only 1 of the 2 images can be read" in outcome[0]


def test_the_command_refuses_an_out_that_is_a_file(tmp_path, folder, capsys):
  (tmp_path / "afile").write_text("x")
  assert train_tables.main(["family", "--data", folder, "--out", str(tmp_path / "afile"),
                            "--steps", "1"]) == 1
  assert "is a file" in capsys.readouterr().err


def test_model_files_keep_batch_statistics_and_calls_are_checked(tmp_path):
  import jax
  from flax import nnx
  from djpeg.models.classifier import ResNet
  from djpeg.models.params import save_params
  from djpeg.models.qtable_net import TableFamily
  x = jnp.asarray(np.random.default_rng(0).random((2, 32, 32, 3)), jnp.float32)
  model = ResNet(10, widths=(8, 8), blocks=(1, 1), rngs=nnx.Rngs(0))
  model(x * 3, train=True)                          # running statistics away from their start
  save_params(model, str(tmp_path / "r.npz"))
  loaded = load_params(ResNet(10, widths=(8, 8), blocks=(1, 1), rngs=nnx.Rngs(1)),
                       str(tmp_path / "r.npz"))
  np.testing.assert_array_equal(loaded(x)[0], model(x)[0])
  net = QTableNet(width=8, rngs=nnx.Rngs(0))
  dct = djpeg.transform(np.zeros((2, 16, 16, 3), np.float32))
  assert net(dct, jnp.zeros(2)).shape == (2, 3, 8, 8)
  with pytest.raises(ValueError, match="add a batch axis"):
    net(tuple(d[0] for d in dct), jnp.zeros(2))
  with pytest.raises(ValueError, match="one per image"):
    net(dct, jnp.zeros(()))
  family = TableFamily(np.array([1e-3, 1e-2]), np.array([30.0, 60.0]))
  with pytest.raises(ValueError, match="level indices must be in 0..1"):
    family(jnp.array([2]))
  with pytest.raises(ValueError, match="one start quality per lambda"):
    TableFamily(np.ones(3), np.ones(4))
  assert jax.jit(family)(jnp.array([1])).shape == (1, 3, 8, 8)


def test_validation_crops_say_why_no_image_gives_one(tmp_path):
  from djpeg.train.data import centre_crops
  root = make_folder(tmp_path / "imgs", count=2)         # 64x64 images
  with open(os.path.join(root, "broken.png"), "wb") as f:
    f.write(b"not a png")
  with pytest.raises(ValueError, match="1 cannot be read, 2 are smaller"):
    centre_crops(root, crop=96, count=2)
