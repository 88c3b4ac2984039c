"""Tests of the dead-network check: a network that really dies in training is named and stopped, one
alive at chance is not, and what the measure reads is what "dead" means (output independent of the
image)."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from train.errors import DeadNetworkError
from train import input_pipeline
from train import model as model_lib
from train.model_dir import checkpoints
from train.model_dir import restore
from train import preparation
from train.run import liveness
from train.run import train

from tests.train.conftest import tiny_config

# Measured on TINY_CONFIG's network and data: at 0.3 the loss explodes (to ~540) and conv5 goes
# silent for every image at step 4; at 1e-5 the network stays alive at ln(3).
KILLING_RATE = 0.3


def _errors(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_network_that_dies_in_training_is_named_saved_and_stopped(dataset_dir, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  model_dir = str(tmp_path / "model")
  manifest = dataset_lib.load(dataset_dir)
  with pytest.raises(DeadNetworkError) as raised:
    train.train_and_evaluate(tiny_config(epochs=3, learning_rate=KILLING_RATE), manifest, model_dir)
  message = str(raised.value)
  assert "the network is dead and cannot recover" in message
  assert "--learning_rate" in message and "--warmup_steps" in message
  assert "--bias_init=caffe" in message
  assert "the training loss was" in message and "at step 1" in message
  died = checkpoints.read_run_state(model_dir)
  # Stopped within one log interval (log_every=1) of the death, not at the end of 3 epochs.
  assert died["dead_at"] == died["step"] < 12
  assert f"Step {died['step']}:" in message and f"silent since step {died['step'] - 1}" in message
  assert f"alive at step {died['step'] - 2}" in message
  closing = [line for line in caplog.text.splitlines() if "Stopped (" in line]
  assert "Stopped (the network is dead)" in closing[0]
  assert not [
      line for line in caplog.text.splitlines()
      if "predicts at chance" in line and "schedule waits" in line
  ]
  # Dead means the output no longer depends on the image: every validation image, whatever its
  # class, gets the same logits from the saved network.
  model, _, _ = restore.restore_model(model_dir, os.path.join(model_dir, "ckpt"))
  prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
  batch = next(
      iter(
          input_pipeline.make_dataset(
              manifest, input_pipeline.Stream("validation", batch_size=9, training=False))))
  assert len(set(batch["label"].numpy())) == 3
  logits = model(preparation.prepare_batch(batch, prep, training=False)).numpy()
  np.testing.assert_array_equal(logits, np.broadcast_to(logits[0], logits.shape))
  # Rerunning the same command resumes the dead network and says so again at once.
  caplog.clear()
  with pytest.raises(DeadNetworkError, match="dead at the first step this run measured"):
    train.train_and_evaluate(tiny_config(epochs=3, learning_rate=KILLING_RATE), manifest, model_dir)


def test_a_network_alive_at_chance_is_not_called_dead(dataset_dir, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  model_dir = str(tmp_path / "model")
  train.train_and_evaluate(tiny_config(epochs=2, learning_rate=1e-5), dataset_lib.load(dataset_dir),
                           model_dir)
  assert checkpoints.read_run_state(model_dir)["dead_at"] is None
  assert not _errors(caplog)
  log_lines = [line for line in caplog.text.splitlines() if "Silent: " in line]
  assert log_lines and all("100.0%" not in line for line in log_lines)


def test_the_measure_counts_units_silent_for_every_image():
  model = model_lib.alexnet(3, width=0.0625)
  counts = liveness.unit_counts(model)
  assert list(counts) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
  images = tf.random.normal([2, input_pipeline.CROP_SIZE, input_pipeline.CROP_SIZE, 3], stddev=60)
  _, activations = model_lib.with_activations(model)(images)
  # A unit that fires for one image only is alive; a layer set to zero everywhere is dead.
  activations = dict(activations)
  fc7 = np.zeros([2, counts["fc7"]], np.float32)
  fc7[1, 0] = 0.5
  activations["relu7"] = tf.constant(fc7)
  activations["relu3"] = tf.zeros_like(activations["relu3"])
  fractions = liveness.silent_fractions(liveness.alive_units(activations).numpy(), counts)
  assert fractions["fc7"] == pytest.approx(1 - 1 / counts["fc7"])
  assert fractions["conv3"] == 1.0
  assert liveness.dead_layer(fractions) == "conv3"
  assert liveness.dead_layer({**fractions, "conv3": 0.99}) is None


def test_the_losses_before_a_death_are_described():
  text = liveness.describe_losses([(1, 1, 3.23), (2, 5, 17.51), (6, 37, 2.31)])
  assert text == ("the training loss was 3.23 at step 1, rose to 17.51 over steps 2-5 and was "
                  "2.31 over steps 6-37")
  assert liveness.describe_losses([(1, 1, 1.1)]) == "the training loss was 1.10 at step 1"
