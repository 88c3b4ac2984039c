"""Datasets from a real `build_shards` run, in both encodings, with their index and TFDS files.

Built once per session and shared by the reader, index and TFDS tests. Until the build writes the
index files and the TFDS metadata itself, `add_interop_files` writes them into the built folder with
the same functions the build will call.
"""

import os

import pytest

from common import records
from common import tfds_metadata
from sample import make_sample_data
from tests import helpers


def add_interop_files(output_dir, manifest):
  """Writes each shard's index and the TFDS metadata, as the build will; returns the index paths."""
  index_paths = []
  for info in manifest["splits"].values():
    for shard in info["shards"]:
      path = os.path.join(output_dir, shard["file"])
      with open(path + records.INDEX_SUFFIX, "wb") as f:
        for offset, data in records.iter_records(path):
          f.write(records.index_line(offset, records.HEADER_BYTES + len(data)
                                     + records.FOOTER_BYTES))
      index_paths.append(path + records.INDEX_SUFFIX)
  for name, data in tfds_metadata.metadata_files(manifest).items():
    with open(os.path.join(output_dir, name), "wb") as f:
      f.write(data)
  return index_paths


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
  add_interop_files(str(output_dir), manifest)
  return str(output_dir), manifest
