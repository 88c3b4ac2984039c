"""Tests of the recipes' settings: train/caffe.flags is bvlc_alexnet's, and each setting it needs
(fc6/fc7 init, the biases' doubled rate, no lighting) does what it says."""

import os

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from train import config as config_lib
from train import input_pipeline
from train import model as model_lib
from train import preparation
from train.run import schedule
from train.run import train

from tests.train.conftest import TINY_CONFIG
from tests.train.test_main import REPO
from tests.train.test_main import _parse


def test_caffe_flags_are_bvlc_alexnets_solver_and_init():
  flag_values = _parse(f"--flagfile={os.path.join(REPO, 'train', 'caffe.flags')}")
  values = {name: flag_values[name].value for name in config_lib.Config.__dataclass_fields__}
  assert (values["batch_size"], values["learning_rate"], values["lr_schedule"]) == (256, 0.01,
                                                                                    "step")
  assert [int(e) for e in values["lr_step_epochs"]] == [20, 40, 60, 80]
  assert (values["bias_init"], values["weight_init"], values["bias_lr_mult"]) == ("caffe", "caffe",
                                                                                  2.0)
  assert values["lighting"] is False and values["weight_decay"] == 0.0005


def test_imagenette_flags_are_caffes_at_the_papers_batch():
  """train/imagenette.flags, the recipe measured to learn on Imagenette, is train/caffe.flags with
  the paper's batch of 128 and nothing else changed."""

  def values(name):
    flag_values = _parse(f"--flagfile={os.path.join(REPO, 'train', name)}")
    return {field: flag_values[field].value for field in config_lib.Config.__dataclass_fields__}

  imagenette, caffe = values("imagenette.flags"), values("caffe.flags")
  assert {k: v for k, v in imagenette.items() if caffe[k] != v} == {"batch_size": 128}


def test_caffe_weight_init_halves_fc6_and_fc7_only():
  tf.keras.utils.set_random_seed(0)
  stddev = {
      layer:
          float(
              np.std(
                  model_lib.alexnet(3, width=0.25,
                                    weight_init="caffe").get_layer(layer).kernel.numpy()))
      for layer in ("conv3", "fc6", "fc7", "fc8")
  }
  assert stddev["fc6"] == pytest.approx(0.005, rel=0.05)
  assert stddev["fc7"] == pytest.approx(0.005, rel=0.05)
  assert stddev["conv3"] == pytest.approx(0.01, rel=0.05)
  assert stddev["fc8"] == pytest.approx(0.01, rel=0.05)


def _one_step_update(dataset_dir, **overrides):
  """The change one training step makes to every variable, from the same start and batch."""
  config = config_lib.Config(
      **{
          **TINY_CONFIG, "dropout": 0.0, "momentum": 0.0, "weight_decay": 0.0, "learning_rate": 1.0,
          **overrides
      })
  manifest = dataset_lib.load(dataset_dir)
  tf.keras.utils.set_random_seed(0)
  model = model_lib.alexnet(3, width=0.0625, dropout=0.0)
  before = [v.numpy() for v in model.trainable_variables]
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=4,
                                                            training=False))))
  train.train_step(model, optimizer, batch, prep, config, tf.random.Generator.from_seed(0))
  return {v.path: v.numpy() - b for v, b in zip(model.trainable_variables, before)}


def test_the_bias_rate_multiplier_scales_only_the_biases(dataset_dir):
  plain = _one_step_update(dataset_dir, lighting=False)
  doubled = _one_step_update(dataset_dir, lighting=False, bias_lr_mult=2.0)
  for path, update in plain.items():
    expected = 2 * update if path.endswith("bias") else update
    # Updates of a bias near 1 are rounded to float32's 1.2e-7 steps.
    np.testing.assert_allclose(doubled[path], expected, rtol=1e-2, atol=1e-6)
  assert any(np.abs(u).max() > 1e-3 for p, u in plain.items() if p.endswith("bias"))


def test_without_lighting_training_pixels_are_the_evaluation_pixels(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=4,
                                                            training=False))))
  rng = tf.random.Generator.from_seed(0)
  evaluation = preparation.prepare_batch(batch, prep, training=False).numpy()
  unlit = preparation.prepare_batch(batch, prep, training=True, rng=rng, lighting=False)
  lit = preparation.prepare_batch(batch, prep, training=True, rng=rng)
  np.testing.assert_array_equal(unlit.numpy(), evaluation)
  assert np.abs(lit.numpy() - evaluation).max() > 0
