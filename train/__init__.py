"""Training loops, data loading, checkpoints and their command line.

Shared infrastructure (any task: feature consistency here, learned quantization tables next):

  data.py        image folders -> seeded, resumable, streaming batches: `ImageFolder` (labeled,
                 one subfolder per class) and `CropStream` (unlabeled random crops with flips).
  state.py       `TrainState` pytree (params, batch stats, optimizer state, step, key),
                 `create_state`, `make_train_step(graphdef, tx, loss_fn)`, `merge_model`.
  parallel.py    data parallelism with `jax.sharding`: `data_mesh`, `replicate`, `shard_batch`,
                 `parallel_step`; multi-host through `jax.distributed` (see its docstring).
  checkpoint.py  `Checkpointer`: atomic orbax checkpoints of the state plus a JSON record (data
                 iterator position, config); `CheckpointError` for corrupt ones.
  loop.py        `fit` (steps, metrics, NaN guard, checkpoints) and `resume`: exact resume.
  monitor.py     `check_finite` / `NonFiniteError`, `MetricsLog` (CSV), `Progress`.
  evaluate.py    accuracy on a test split compressed by libjpeg-turbo (Pillow) per quality.
  cli.py         the `djpeg-train` command.

Tasks:

  consistency.py feature consistency training against JPEG (Wan et al. 2020), plain training and
                 JPEG augmentation baselines, pixel and DCT-domain models; `python -m
                 train.consistency`.

Imports `djpeg` and `models`.
"""
