"""Tests of --steps_per_loop: the same training in fewer calls, with exact boundaries."""

import os

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from train import input_pipeline
from train import model as model_lib
from train import preparation
from train.run import loop as loop_lib
from train.run import schedule
from train.run import train

from tests.train.conftest import checkpoint_steps
from tests.train.conftest import read_scalars
from tests.train.conftest import tiny_config


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 1),  # A run's first step is alone, for its log line.
        (5, 1),  # 5 -> 6: the checkpoint at 6.
        (6, 2),  # 6 -> 8: the log line at 8.
        (8, 4),  # 8 -> 12: the end of the epoch.
        (12, 4),  # 12 -> 16: at most steps_per_loop.
        (17, 1),  # 17 -> 18: the last step.
        (3, 1),  # A resumed run's first step too: it is logged.
        (4, 2),  # 4 -> 6 after a resume at 3.
    ])
def test_a_loop_never_crosses_a_boundary(step, expected):
  config = tiny_config(steps_per_loop=4, log_every=8, checkpoint_every=6)
  start_step = 3 if step in (3, 4) else 0
  assert loop_lib.Boundaries.from_config(config, 12, 18, start_step).loop_length(step) == expected


def _train(manifest, calls, steps_per_call):
  """Trains calls * steps_per_call steps from the same initialisation on the same batches."""
  config = tiny_config(seed=0, batch_size=3)
  tf.keras.utils.set_random_seed(0)
  strategy = tf.distribute.get_strategy()
  model = model_lib.alexnet(manifest.num_classes, config.groups, config.dropout, config.width)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
  # Evaluation batches: the same images in the same order in both runs; 3 divides the 18 images.
  dataset = input_pipeline.make_dataset(
      manifest, input_pipeline.Stream("train", batch_size=3, training=False)).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  train_loop = loop_lib.make_train_loop(
      strategy, lambda batch, measure: train.train_step(model, optimizer, batch, prep, config,
                                                        state["rng"], measure))
  sums = [
      loop_lib.run_loop(train_loop, iterator, steps_per_call, manifest)[0].numpy()
      for _ in range(calls)
  ]
  return np.sum(sums, axis=0), [w.numpy() for w in model.weights]


def test_steps_per_loop_trains_like_one_step_per_call(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  one_sums, one_weights = _train(manifest, calls=6, steps_per_call=1)
  loop_sums, loop_weights = _train(manifest, calls=2, steps_per_call=3)
  assert one_sums[3] == loop_sums[3] == 18  # Six steps of three images in both.
  np.testing.assert_allclose(loop_sums, one_sums, rtol=1e-5)
  for loop_weight, one_weight in zip(loop_weights, one_weights):
    np.testing.assert_allclose(loop_weight, one_weight, rtol=1e-5, atol=1e-7)
  _, other_weights = _train(manifest, calls=1, steps_per_call=1)
  assert not np.allclose(other_weights[-2], one_weights[-2])  # The comparison can fail.


def test_logs_checkpoints_and_evaluations_land_on_their_exact_steps(dataset_dir, tmp_path,
                                                                    monkeypatch):
  lengths = []
  loop_length = loop_lib.Boundaries.loop_length
  monkeypatch.setattr(loop_lib.Boundaries, "loop_length",
                      lambda *args: lengths.append(loop_length(*args)) or lengths[-1])
  model_dir = str(tmp_path / "model")
  # 4 steps an epoch: loops [1], [2, 3], [4], [5, 6], [7] for the first step, the checkpoints
  # every 3, the log line and evaluation at the epoch's end (4) and --max_steps=7.
  config = tiny_config(steps_per_loop=3, log_every=4, checkpoint_every=3, epochs=2, max_steps=7)
  validation = train.train_and_evaluate(config, dataset_lib.load(dataset_dir), model_dir)
  assert lengths == [1, 2, 1, 2, 1]
  assert validation["step"] == 7
  assert checkpoint_steps(os.path.join(model_dir, "ckpt")) == [4, 6, 7]
  scalars = read_scalars(os.path.join(model_dir, "eval"))
  assert len(scalars["eval/loss"]) == 2  # At the epoch's end (4) and the last step (7).
  assert len(read_scalars(os.path.join(model_dir, "train"))["train/loss"]) == 2  # Steps 1, 4.
