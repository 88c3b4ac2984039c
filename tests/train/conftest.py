"""The trainer's fixtures: the tiny three-colour dataset (`tests/datasets.py`) and a model trained on it.

Each class is a flat colour with pixel noise, so a narrow AlexNet learns it in a few steps.
"""

import pytest

from common import dataset as dataset_lib
from tests import datasets
from train import config as config_lib
from train.run import train

# A narrow network and tiny batches: 18 training images give 4 steps per epoch.
TINY_CONFIG = dict(width=0.0625, batch_size=4, epochs=1, log_every=1, checkpoint_every=100,
                   shuffle_buffer=8, seed=0)


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
  train.train_and_evaluate(config_lib.Config(**TINY_CONFIG), dataset_lib.load(dataset_dir),
                           model_dir)
  return model_dir
