"""Tests of a training run on tiny data: what it writes, its schedule and update rule, resuming."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from train.errors import TrainingError
from train import input_pipeline
from train import model as model_lib
from train.model_dir import checkpoints as checkpoints_lib
from train.model_dir import directory as model_dir_lib
from train import preparation
from train.run import progress as progress_lib
from train.run import schedule
from train.run import summaries
from train.run import train

from tests.train.conftest import STEPS_PER_EPOCH
from tests.train.conftest import checkpoint_steps
from tests.train.conftest import read_scalars
from tests.train.conftest import tiny_config


def _prep(manifest):
  return preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)


def test_training_writes_config_mean_checkpoints_and_summaries(trained_dir, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  with open(os.path.join(trained_dir, "config.json")) as f:
    config = json.load(f)
  assert config["model"] == {"num_classes": 3, "groups": 2, "width": 0.0625, "dropout": 0.5}
  assert config["classes"] == manifest.data["classes"]
  assert (config["image_size"], config["input_size"]) == (256, 227)
  assert config["stats"] == manifest.stats and config["flags"]["batch_size"] == 4
  np.testing.assert_array_equal(np.load(os.path.join(trained_dir, "mean.npy")),
                                manifest.mean_image())
  assert checkpoint_steps(os.path.join(trained_dir, "ckpt")) == [STEPS_PER_EPOCH]
  assert checkpoint_steps(os.path.join(trained_dir, "best")) == [STEPS_PER_EPOCH]
  train_scalars = read_scalars(os.path.join(trained_dir, "train"))
  assert set(train_scalars) == {
      "train/loss", "train/top1", "train/top5", "train/learning_rate", "perf/images_per_sec"
  } | {
      f"train/silent_units/{layer}"
      for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
  }
  assert len(train_scalars["train/loss"]) == STEPS_PER_EPOCH
  assert train_scalars["train/learning_rate"] == [pytest.approx(0.01)] * STEPS_PER_EPOCH
  assert set(read_scalars(os.path.join(trained_dir,
                                       "eval"))) == {"eval/loss", "eval/top1", "eval/top5"}
  assert not os.path.exists(os.path.join(trained_dir, model_dir_lib.LOCK_NAME))


def test_train_steps_lower_the_loss(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  # The paper's network at full width: with its N(0, 0.01) init a narrow one carries almost no
  # signal from the pixels to the logits, and its loss sits at ln(3) for hundreds of steps.
  config = tiny_config(width=1.0, dropout=0.0, learning_rate=0.0001, batch_size=6)
  tf.keras.utils.set_random_seed(0)
  model = model_lib.alexnet(manifest.num_classes, config.groups, config.dropout, config.width)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=6,
                                                            training=False))))
  step = tf.function(
      lambda b: train.train_step(model, optimizer, b, _prep(manifest), config, state["rng"]))
  losses = [float(step(batch)[0]) / 6 for _ in range(12)]
  assert np.mean(losses[-4:]) < 0.85 * losses[0], losses


def test_plateau_divides_the_rate_by_ten_after_patience_at_most_max_drops_times():
  config = tiny_config(patience=2, max_lr_drops=2)
  state = schedule.create_state(config)
  rates, best = [], []
  for error in (0.9, 0.8, 0.8, 0.85, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7):
    best.append(schedule.update_on_validation(config, state, error))
    rates.append(round(float(state["learning_rate"].numpy()), 8))
  assert best == [True, True, False, False, True] + [False] * 5
  assert rates == [0.01] * 3 + [0.001] * 3 + [0.0001] * 4
  assert float(state["best_val_error"].numpy()) == 0.7


def test_step_schedule_divides_the_rate_by_ten_at_each_boundary():
  config = tiny_config(lr_schedule="step", lr_step_epochs=(2, 4))
  rates = [schedule.step_schedule_rate(config, epoch) for epoch in range(6)]
  np.testing.assert_allclose(rates, [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_weight_decay_follows_the_papers_update_rule(dataset_dir):
  """v <- 0.9 v - wd * lr * w - lr * grad; w <- w + v, with the decay on kernels only."""
  manifest = dataset_lib.load(dataset_dir)
  config = tiny_config(weight_decay=0.5, learning_rate=0.1)
  model = model_lib.alexnet(manifest.num_classes, config.groups, 0.0, config.width)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=4,
                                                            training=False))))
  images = preparation.prepare_batch(batch, _prep(manifest), training=True,
                                     rng=tf.random.Generator.from_seed(7))
  with tf.GradientTape() as tape:
    logits = model(images, training=True)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label"], logits))
  grads = {
      v.path: g.numpy()
      for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables))
  }
  before = {v.path: v.numpy() for v in model.trainable_variables}
  train.train_step(model, optimizer, batch, _prep(manifest), config,
                   tf.random.Generator.from_seed(7))
  for variable in model.trainable_variables:
    decay = config.weight_decay * before[variable.path] if variable.path.endswith("kernel") else 0
    expected = before[variable.path] - 0.1 * (grads[variable.path] + decay)
    np.testing.assert_allclose(variable.numpy(), expected, atol=1e-5, err_msg=variable.path)


def test_resume_continues_from_the_saved_step_and_learning_rate(trained_copy, dataset_dir, caplog):
  manifest = dataset_lib.load(dataset_dir)
  caplog.set_level(logging.INFO, logger="absl")
  train.train_and_evaluate(tiny_config(epochs=2, log_every=2), manifest, trained_copy)
  assert checkpoint_steps(os.path.join(trained_copy, "ckpt")) == [4, 8]
  text = caplog.text
  assert "Resumed from" in text and "at step 4" in text
  assert "Batch: 1/4" in text and "Epoch: 2" in text and "Epoch: 1 " not in text
  assert "LR: 0.01 " in text
  # Settings that may change are logged and recorded: config.json says what the run used.
  assert "Resuming with --epochs=2 (was 1)" in text
  assert "Resuming with --log_every=2 (was 1)" in text
  with open(os.path.join(trained_copy, "config.json")) as f:
    assert json.load(f)["flags"]["epochs"] == 2
  reader = tf.train.load_checkpoint(os.path.join(trained_copy, "ckpt"))
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 8
  assert reader.get_tensor("learning_rate/.ATTRIBUTES/VARIABLE_VALUE") == pytest.approx(0.01)
  # The closing line: why it stopped, where, the last validation, and where the models are.
  closing = [line for line in text.splitlines() if "Stopped (" in line]
  assert len(closing) == 1 and "Stopped (reached --epochs=2) at step 8 (epoch 2, batch 4/4)" in (
      closing[0])
  assert "last validation at step 8: top-1 error" in closing[0] and "on 9 images" in closing[0]
  assert os.path.join(trained_copy, "ckpt", "ckpt-8") in closing[0]
  assert os.path.join(trained_copy, "best", "ckpt-") in closing[0]


@pytest.mark.parametrize(
    "overrides, flag, values", [(dict(learning_rate=0.5), "learning_rate", ("0.5", "0.01")),
                                (dict(batch_size=2), "batch_size", ("2", "4")),
                                (dict(momentum=0.5), "momentum", ("0.5", "0.9")),
                                (dict(bias_init="caffe"), "bias_init", ("caffe", "paper")),
                                (dict(warmup_steps=5), "warmup_steps", ("5", "0"))],
    ids=["learning_rate", "batch_size", "momentum", "bias_init", "warmup_steps"])
def test_resume_refuses_a_setting_that_must_not_change(trained_copy, dataset_dir, overrides, flag,
                                                       values):
  path = os.path.join(trained_copy, "config.json")
  with open(path) as f:
    before = f.read()
  with pytest.raises(TrainingError) as raised:
    train.train_and_evaluate(tiny_config(epochs=2, **overrides), dataset_lib.load(dataset_dir),
                             trained_copy)
  message = str(raised.value)
  assert f"--{flag}={values[0]} differs from the {values[1]}" in message and "\n" not in message
  with open(path) as f:
    assert f.read() == before
  assert checkpoint_steps(os.path.join(trained_copy, "ckpt")) == [STEPS_PER_EPOCH]


def test_first_loss_far_from_log_classes_warns(caplog):
  caplog.set_level(logging.INFO, logger="absl")
  assert progress_lib.check_first_loss(1.2, 3)
  assert not progress_lib.check_first_loss(331154216.0, 1000)
  assert "First loss 3.31154e+08, expected about ln(1000)=6.91" in caplog.text
  assert "weight init" in caplog.text
  caplog.clear()
  # The trainer's first log line runs the check (and only the first: later losses may be anything).
  progress = progress_lib.Progress(tiny_config(), 4, 8, 0, summaries.SummaryWriters("", False),
                                   model_lib.alexnet(3, width=0.0625), num_classes=3)
  for step in (1, 2):
    progress.add(step, tf.constant([4 * 50.0, 0.0, 4.0, 4.0]))
    progress.log(step, 0.01)
  assert caplog.text.count("First loss 50, expected about ln(3)=1.10") == 1
  assert "Loss: 50.0000" in caplog.text


def test_checkpoint_saves_log_no_library_chatter(trained_dir, tmp_path, caplog):
  from common import quiet  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  caplog.set_level(logging.INFO)
  model = model_lib.alexnet(3, width=0.0625)
  checkpoints_lib.Checkpoints(str(tmp_path / "model"), True, model=model).save(1, model)
  assert os.path.exists(tmp_path / "model" / "ckpt" / "ckpt-1.index")
  assert "Sharding callback" not in caplog.text
