"""Task-aware tables (train.task_tables): the objective, valid tables, family files, errors, notebook.

A tiny untrained classifier (a ResNet of the consistency task's structure, widths 4 and 8) on
16x16 images stands in for a trained one: the tests check the machinery, not accuracy.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import nbformat
import numpy as np
import optax
import pytest
from flax import nnx
from nbclient import NotebookClient
from PIL import Image

import djpeg
from djpeg import cli as djpeg_cli
from djpeg.models.params import save_params
from djpeg.models.qtable_net import TableFamily
from djpeg.train import checkpoint, consistency, task_tables
from djpeg.train import config as config_lib
from djpeg.train import state as state_lib
from train_util import make_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = consistency.Config(widths=(4, 8), blocks=(1, 1), layers=("stage2",))
CLASSES = ("a", "b", "c")


def tiny_classifier(cfg: consistency.Config = TINY) -> task_tables.Classifier:
  graphdef, params, rest = state_lib.split_model(consistency.build_model(cfg, len(CLASSES)))
  return task_tables.Classifier(task_tables.network_of(cfg, graphdef, params, rest), cfg,
                                CLASSES, "tiny")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return make_dataset(str(tmp_path_factory.mktemp("tt")), train=8, test=2)


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("cls") / "classifier.npz")
  task_tables.save_classifier(path, tiny_classifier())
  return path


@pytest.fixture(scope="module")
def batch(dataset):
  split = task_tables.load_split(dataset, "train")
  return task_tables.fixed_images(split, 8)


def test_classifier_file_round_trips(classifier_file):
  loaded = task_tables.load_classifier(classifier_file, CLASSES)
  original = tiny_classifier()
  assert loaded.cfg == TINY and loaded.classes == CLASSES
  for a, b in zip(jax.tree.leaves((original.network.params, original.network.rest)),
                  jax.tree.leaves((loaded.network.params, loaded.network.rest))):
    assert np.array_equal(a, b)


def test_identity_codec_and_zero_rate_weight_give_the_clean_loss(classifier_file, batch):
  network = task_tables.load_classifier(classifier_file).network
  images, labels = batch
  tables = np.asarray(djpeg.quality_tables(30))[[0, 1, 1]]

  @jax.jit
  def objectives(images, labels):
    ce = task_tables.task_objective(network, images, labels, tables, 1.0, rate_weight=0.0,
                                    codec=False)[0]
    features = task_tables.task_objective(network, images, labels, tables, 1.0, rate_weight=0.0,
                                          codec=False, task="features")[0]
    clean = optax.softmax_cross_entropy_with_integer_labels(network(images)[0], labels)
    return ce, features, clean

  ce, features, clean = objectives(jnp.asarray(images), jnp.asarray(labels))
  np.testing.assert_allclose(ce, clean, rtol=1e-6)
  assert np.all(np.asarray(features) == 0)


def test_a_few_steps_lower_the_task_objective(classifier_file, batch):
  network = task_tables.load_classifier(classifier_file).network
  images, labels = jnp.asarray(batch[0]), jnp.asarray(batch[1])
  model = TableFamily(np.asarray([1.0, 30.0]), np.asarray([20.0, 80.0]))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(0.05)
  key = jax.random.PRNGKey(0)

  def loss(params):
    family = nnx.merge(graphdef, params, rest)
    return task_tables.family_loss(family, (images, labels), key, network, task="ce",
                                   layers=("pooled",))[0]

  @jax.jit
  def step(params, opt_state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  opt_state = tx.init(params)
  values = []
  for _ in range(6):
    params, opt_state, value = step(params, opt_state)
    values.append(float(value))
  assert values[-1] < values[0] - 1e-3, values


def test_the_per_image_network_trains_stably(classifier_file, batch):
  """60 steps of the per-image network's own optimizer: the objective falls and the gradient
  keeps its scale. With unnormalized features, Adam grew them step after step (on CIFAR-10 the
  gradient norm rose from 0.02 to 135 and the objective above its start; here it reached 100x
  its start within 60 steps)."""
  network = task_tables.load_classifier(classifier_file).network
  images, labels = jnp.asarray(batch[0]), jnp.asarray(batch[1])
  net = task_tables.TaskTableNet((0.5, 200.0), width=32, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  tx = task_tables._optimizer("net", task_tables.Config(
      kind="net", classifier="c", data="d", out="o").lr)

  def loss(params, key):
    return task_tables.net_loss(nnx.merge(graphdef, params, rest), (images, labels), key,
                                network, task="ce", layers=("pooled",),
                                lambda_range=(0.5, 200.0))[0]

  @jax.jit
  def step(params, opt_state, key):
    grads = jax.grad(loss)(params, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    return optax.apply_updates(params, updates), opt_state, norm

  fixed = jax.jit(lambda params: loss(params, jax.random.PRNGKey(123)))
  opt_state = tx.init(params)
  start = float(fixed(params))
  norms = []
  for i in range(60):
    params, opt_state, norm = step(params, opt_state, jax.random.PRNGKey(i))
    norms.append(float(norm))
  assert float(fixed(params)) < start - 1e-3
  assert max(norms[-10:]) < 3 * max(norms[:10]), norms


def test_learned_tables_are_valid_baseline_tables_for_any_lambda(batch, tmp_path):
  lo, hi = task_tables.LAMBDA_LIMITS
  net = task_tables.TaskTableNet((0.5, 200.0), width=4, rngs=nnx.Rngs(0))
  # Push the network far from its start so that its raw output would leave 1..255.
  net.heads[...] = jax.random.normal(jax.random.PRNGKey(1), net.heads.shape) * 50.0
  net.offsets[...] = jax.random.normal(jax.random.PRNGKey(2), net.offsets.shape) * 20.0
  images = batch[0]
  for lmbda in (lo, 0.01, 0.5, 7.0, 200.0, 1e4, hi):
    tables = task_tables.predict_task_tables(net, images, lmbda)
    assert tables.shape == (len(images), 3, 8, 8) and tables.dtype == np.int32
    assert tables.min() >= 1 and tables.max() <= 255
    assert np.array_equal(tables[:, 1], tables[:, 2])      # Cr uses Cb's table
  family = TableFamily(np.geomspace(lo, hi, 5), np.linspace(1, 100, 5))
  family.logits[...] = jax.random.normal(jax.random.PRNGKey(3), family.logits.shape) * 100.0
  raw = np.asarray(task_tables.tie_chroma(family(jnp.arange(5))))
  # Steps in [1, 255] up to float32 rounding of exp(log 255); the file gets the rounded steps.
  assert np.all(np.isfinite(raw)) and raw.min() >= 1 - 1e-4 and raw.max() <= 255 + 1e-3
  cfg = task_tables.Config(kind="family", classifier="c", data="d", out="o",
                           lambdas=tuple(float(x) for x in np.geomspace(lo, hi, 5)))
  exported = task_tables.export_family(str(tmp_path / "family.json"), family, cfg, tiny_classifier(), steps=0)
  assert exported.dtype == np.int32 and exported.min() >= 1 and exported.max() <= 255
  assert exported.min() == 1 and exported.max() == 255      # the push reached both limits


def test_family_file_round_trips_and_the_cli_encodes_with_it(tmp_path, batch):
  cfg = task_tables.Config(kind="family", classifier="c", data="d", out=str(tmp_path),
                           lambdas=(1.0, 10.0, 100.0))
  model = task_tables.build_tables_model("family", cfg)
  path = str(tmp_path / "family.json")
  tables = task_tables.export_family(path, model, cfg, tiny_classifier(), steps=0)
  family = djpeg.tables.load_table_family(path)
  assert np.array_equal(family["tables"], tables) and list(family["lambdas"]) == [1, 10, 100]
  image = str(tmp_path / "in.png")
  Image.fromarray(np.round(batch[0][0] * 255).astype(np.uint8)).save(image)
  out = str(tmp_path / "out.jpg")
  assert djpeg_cli.main(["encode", image, out, "--tables", path, "--level", "2"]) == 0
  written = djpeg.load_coefficients(out)
  assert np.array_equal(np.asarray(written.tables), tables[1])
  with Image.open(out) as decoded:
    assert decoded.size == (16, 16) and len(decoded.quantization) == 2   # Cb and Cr share one


def test_a_one_table_family_trains_and_writes_one_table(tmp_path, classifier_file, batch):
  """`one_table`: every level's three tables are Y's, a few steps lower its objective, and the
  CLI's compact files carry one DQT entry for all components (65 bytes fewer than two)."""
  network = task_tables.load_classifier(classifier_file).network
  images, labels = jnp.asarray(batch[0]), jnp.asarray(batch[1])
  cfg = task_tables.Config(kind="family", classifier="c", data="d", out=str(tmp_path),
                           lambdas=(1.0, 30.0), one_table=True)
  model = task_tables.build_tables_model("family", cfg)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  loss_fn = task_tables.tables_loss_fn("family", cfg)
  tx = optax.adam(0.05)

  @jax.jit
  def step(params, opt_state):
    loss = lambda p: loss_fn(nnx.merge(graphdef, p, rest), (images, labels), None, network)[0]
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  opt_state, values = tx.init(params), []
  for _ in range(6):
    params, opt_state, value = step(params, opt_state)
    values.append(float(value))
  assert values[-1] < values[0] - 1e-3, values
  path = str(tmp_path / "family.json")
  tables = task_tables.export_family(path, nnx.merge(graphdef, params, rest), cfg,
                                     tiny_classifier(), steps=6)
  assert np.array_equal(tables[:, 0], tables[:, 1]) and np.array_equal(tables[:, 0], tables[:, 2])
  image = str(tmp_path / "in.png")
  Image.fromarray(np.round(batch[0][0] * 255).astype(np.uint8)).save(image)
  one, two = str(tmp_path / "one.jpg"), str(tmp_path / "two.jpg")
  assert djpeg_cli.main(["encode", image, one, "--tables", path, "--level", "1", "--compact",
                         "--quiet"]) == 0
  assert djpeg_cli.main(["encode", image, two, "--tables", path, "--level", "1", "--quiet"]) == 0
  with Image.open(one) as decoded, Image.open(two) as plain:
    assert len(decoded.quantization) == 1 and len(plain.quantization) == 2
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(plain))
  with pytest.raises(ValueError, match="one_table"):
    task_tables.Config(kind="net", classifier="c", data="d", out="o", one_table=True).check()


def test_bad_inputs_give_clear_errors(tmp_path, dataset, classifier_file):
  # A classifier checkpoint of the wrong kind: a table run's record, a QTableNet file.
  run = tmp_path / "tables_run"
  with checkpoint.Checkpointer(str(run / "checkpoints")) as ckpt:
    ckpt.save(1, {"x": jnp.zeros(2)}, {"config": {"kind": "family", "steps": 10}})
  with pytest.raises(ValueError, match="not a classifier checkpoint.*tables"):
    task_tables.load_classifier(str(run), CLASSES)
  net_file = str(tmp_path / "qtable_net.npz")
  save_params(task_tables.TaskTableNet((1.0, 10.0), width=4, rngs=nnx.Rngs(0)), net_file)
  with pytest.raises(ValueError, match="not a classifier checkpoint"):
    task_tables.load_classifier(net_file)
  with pytest.raises(ValueError, match="does not exist"):
    task_tables.load_classifier(str(tmp_path / "nothing"))
  (tmp_path / "c.json").write_text("{}")
  with pytest.raises(ValueError, match="not a classifier checkpoint: not a .npz file"):
    task_tables.load_classifier(str(tmp_path / "c.json"))
  with pytest.raises(ValueError, match="trained on classes"):
    task_tables.load_classifier(classifier_file, ("x", "y", "z"))
  # A consistency run folder (two checkpoints) used on data of another class count: named as
  # such. The checkpointer's resume advice had come with it: delete the newest, good, step.
  two = make_dataset(str(tmp_path / "two"), train=2, test=1)
  import shutil
  shutil.rmtree(os.path.join(two, "train", "c"))
  cfg = consistency.Config(widths=(4, 8), blocks=(1, 1), layers=("stage2",), data=two,
                           out=str(tmp_path / "clf"))
  graphdef, params, rest = state_lib.split_model(consistency.build_model(cfg, 2))
  tx = consistency.make_optimizer(cfg, 2, 1)
  state = state_lib.TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32),
                               jax.random.PRNGKey(0))
  with checkpoint.Checkpointer(str(tmp_path / "clf" / "checkpoints")) as ckpt:
    for step in (1, 2):
      ckpt.save(step, state, {"config": config_lib.as_dict(cfg)})
  assert task_tables.load_classifier(str(tmp_path / "clf")).classes == ("a", "b")
  for folder_kept in (True, False):
    with pytest.raises(ValueError) as caught:
      task_tables.load_classifier(str(tmp_path / "clf"), CLASSES)
    message = str(caught.value)
    assert ("trained on classes ['a', 'b']" if folder_kept else "another number of classes") \
        in message and "delete" not in message, message
    if folder_kept:
      shutil.rmtree(two)               # its training folder gone: the restore decides
  # Lambda out of range, in the configuration and at inference.
  base = dict(kind="family", classifier=classifier_file, data=dataset, out=str(tmp_path / "o"))
  for bad in ({"lambdas": (0.0, 1.0)}, {"lambdas": (1.0, 1e9)}, {"lambdas": (5.0, 1.0)},
              {"lambda_range": (-1.0, 10.0)}, {"lambda_range": (10.0, 1.0)}):
    with pytest.raises(ValueError, match="lambda"):
      task_tables.Config(**base, **bad).check()
  with pytest.raises(ValueError, match="lambda must be in"):
    task_tables.check_lambda(float("nan"))
  # Fewer validation images than levels made the validation objective 0 / 0 (NaN).
  with pytest.raises(ValueError, match="val_images 4 must give every one of the 8 levels"):
    task_tables.Config(**base, val_images=4).check()
  net = task_tables.TaskTableNet((1.0, 10.0), width=4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="lambda must be in"):
    task_tables.predict_task_tables(net, np.zeros((1, 16, 16, 3)), 1e9)
  # An empty data folder, and one without class folders, through the command line.
  empty = tmp_path / "empty"
  (empty / "train").mkdir(parents=True)
  for data, message in ((tmp_path / "none", "no train/ subfolder"),
                        (empty, "no class subfolders")):
    argv = ["family", "--classifier", classifier_file, "--data", str(data), "--out",
            str(tmp_path / "out")]
    assert task_tables.main(argv) == 1
  with pytest.raises(ValueError, match="no class subfolders"):
    task_tables.run(task_tables.Config(**dict(base, data=str(empty))))
  with pytest.raises(ValueError, match="no train/ subfolder"):
    task_tables.run(task_tables.Config(**dict(base, data=str(tmp_path / "none"))))


def test_cli_registers_the_task(capsys):
  from djpeg.train import cli
  assert "task-tables" in cli.TASKS
  with pytest.raises(SystemExit):
    cli.main(["task-tables", "--help"])
  assert "--classifier" in capsys.readouterr().out


def test_notebook_executes(dataset, monkeypatch):
  # Reduced size for CI as tests/test_notebooks.py does: few steps, a small labeled dataset.
  monkeypatch.setenv("DJPEG_NOTEBOOK_STEPS", "4")
  monkeypatch.setenv("DJPEG_NOTEBOOK_DATA", dataset)
  nb = nbformat.read(os.path.join(REPO, "notebooks", "task_tables.ipynb"), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": REPO}}).execute()
  errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
