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
