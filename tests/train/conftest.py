"""The trainer's fixtures: the tiny three-colour dataset (`tests/datasets.py`) and a model trained on it.

Each class is a flat colour with pixel noise, so a narrow AlexNet learns it in a few steps.
"""

import os
import shutil

import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from tests import datasets
from train import config as config_lib
from train.run import train

# A narrow network and tiny batches: 18 training images give 4 steps per epoch.
TINY_CONFIG = dict(width=0.0625, batch_size=4, epochs=1, log_every=1, checkpoint_every=100,
                   shuffle_buffer=8, seed=0)
# 18 training images in batches of 4: 4 steps per epoch; 9 validation images: a partial last batch.
STEPS_PER_EPOCH = 4
# TINY_CONFIG keeps the paper's initialisation (biases of 1) and rate (0.01), which the narrow
# network survives only briefly. Over 60 seeds of 40 steps at batch 4, by step 12 no layer but conv1
# (3 of its 6 units) was more than 25% silent, no unit of conv5 at all (the tests here train at
# most 8 steps at that rate); the loss then climbs (to 5-24) and 8 of the 60 died by step 40 (conv5
# silent for every image: train/run/liveness.py stops the run), the first at step 28. At batch 2 the
# climb starts sooner: 3 of 20 died, at steps 22-24.
# A test that trains longer, or until it sends a signal (however many steps that takes on a loaded
# machine), trains with Caffe's initialisation (biases 0.1, fc6 and fc7 N(0, 0.005)): at 0.01 none
# of 60 seeds of 40 steps at batch 4 nor 20 at batch 2 died, the loss stayed below 1.3, and no layer
# was more than 29% silent but conv1 (at most 3 of its 6 units, as with the paper's)
# (tiny_config(**CAFFE_INIT) in process, CAFFE_FLAGS for `python -m train.main`).
CAFFE_INIT = dict(bias_init="caffe", weight_init="caffe")
CAFFE_FLAGS = [f"--{name}={value}" for name, value in CAFFE_INIT.items()]


def tiny_config(**overrides):
  return config_lib.Config(**{**TINY_CONFIG, **overrides})


def checkpoint_steps(directory):
  """The steps of the checkpoints `directory` holds, oldest first."""
  state = tf.train.get_checkpoint_state(directory)
  return sorted(int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths)


def read_scalars(directory):
  """Every scalar summary in `directory`'s event files: {tag: [values in the order written]}."""
  values = {}
  for path in tf.io.gfile.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
  return values


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory):
  """A read-only tiny dataset shared by every test that does not damage it."""
  return datasets.colour_dataset(str(tmp_path_factory.mktemp("shards")))


@pytest.fixture
def writable_dataset_dir(tmp_path):
  """A fresh copy for tests that truncate or otherwise damage the shards."""
  return datasets.colour_dataset(str(tmp_path / "shards"))


@pytest.fixture(scope="session")
def trained_dir(dataset_dir, tmp_path_factory):
  """One epoch (4 steps) of training, shared read-only; tests that alter it work on a copy."""
  model_dir = str(tmp_path_factory.mktemp("trained") / "model")
  train.train_and_evaluate(tiny_config(), dataset_lib.load(dataset_dir), model_dir)
  return model_dir


@pytest.fixture
def trained_copy(trained_dir, tmp_path):
  """A copy of `trained_dir` that a test may alter."""
  return shutil.copytree(trained_dir, str(tmp_path / "model"))
