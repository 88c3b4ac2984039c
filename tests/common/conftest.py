"""Datasets from a real `build_shards` run, in both encodings, with their index and TFDS files.

Built once per session and shared by the reader, index and TFDS tests; the build writes each shard's
index and TFDS's files itself.
"""

import os

import pytest

from sample import make_sample_data
from tests import helpers


def index_paths(output_dir, manifest):
  """The index of every shard the build listed in the manifest, each beside its shard."""
  return [
      os.path.join(output_dir, shard["index_file"])
      for info in manifest["splits"].values()
      for shard in info["shards"]
  ]


@pytest.fixture(scope="session")
def interop_sample(tmp_path_factory):
  """A small sample tree with all three splits: (input_dir, SampleInfo)."""
  root = tmp_path_factory.mktemp("interop_sample") / "imagenet"
  info = make_sample_data.make_sample_tree(root, images_per_class_train=3, images_per_class_val=2,
                                           images_per_class_test=1, broken_files=False)
  return root, info


@pytest.fixture(scope="session", params=["jpeg", "raw"])
def interop_built(request, interop_sample, tmp_path_factory):
  """The sample built with one encoding, plus index and TFDS files: (output_dir, manifest)."""
  input_dir, _ = interop_sample
  output_dir = tmp_path_factory.mktemp(f"interop_{request.param}") / "shards"
  manifest = helpers.build_dataset(input_dir, output_dir, encoding=request.param,
                                   num_shards={"train": 2, "validation": 2, "test": 1})
  return str(output_dir), manifest
