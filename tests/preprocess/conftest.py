"""Fixtures: a small sample tree and the dataset built from it, shared by the stage-1 tests."""

import pytest

from sample import make_sample_data
from tests import helpers


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
  """A sample tree with class folders: (input_dir, SampleInfo)."""
  root = tmp_path_factory.mktemp("sample") / "imagenet"
  info = make_sample_data.make_sample_tree(root, images_per_class_train=8, images_per_class_val=3)
  return root, info


@pytest.fixture(scope="session")
def flat_sample(tmp_path_factory):
  """A sample tree with the official flat val/ and test/ folders, ground truth and meta.mat."""
  root = tmp_path_factory.mktemp("flat") / "imagenet"
  info = make_sample_data.make_sample_tree(root, images_per_class_train=4, images_per_class_val=3,
                                           images_per_class_test=2, val_layout="flat",
                                           broken_files=False)
  return root, info


@pytest.fixture(scope="session")
def built(sample, tmp_path_factory):
  """The dataset built from `sample` in-process: (output_dir, manifest dict)."""
  input_dir, _ = sample
  output_dir = tmp_path_factory.mktemp("built") / "shards"
  manifest = helpers.build_dataset(input_dir, output_dir, num_shards={"train": 3})
  return output_dir, manifest
