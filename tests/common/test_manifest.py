"""Loading a manifest checks the files it lists and fails with one line naming the file."""

import json

import numpy as np
import pytest

from common import manifest as manifest_lib


@pytest.fixture
def dataset(tmp_path):
  shard = tmp_path / "train-00000-of-00001.tfrecord"
  shard.write_bytes(b"records" * 10)
  np.save(tmp_path / "mean.npy", np.full((4, 4, 3), 100, np.float32))
  data = {
      "schema_version": 1, "image_size": 4, "encoding": "JPEG", "label_base": 0,
      "classes": [{"label": 0, "synset": "n1", "name": "one"},
                  {"label": 1, "synset": "n2", "name": "two"}],
      "splits": {"train": {"num_examples": 3, "class_counts": {"n1": 2, "n2": 1}, "shards": [
          {"file": shard.name, "num_examples": 3, "size_bytes": 70,
           "sha256": manifest_lib.file_sha256(str(shard))}]}},
      "stats": {"mean_file": "mean.npy"},
  }
  (tmp_path / "manifest.json").write_text(manifest_lib.dumps(data))
  return tmp_path, data


def _write(directory, data):
  (directory / "manifest.json").write_text(json.dumps(data))


def test_load_reads_what_the_trainer_needs(dataset):
  directory, _ = dataset
  manifest = manifest_lib.load(str(directory), verify="sha256")
  assert manifest.num_classes == 2
  assert manifest.synsets == ["n1", "n2"]
  assert manifest.class_names == ["one", "two"]
  assert manifest.num_examples("train") == 3
  assert manifest.has_split("train") and not manifest.has_split("validation")
  assert manifest.shard_paths("train") == [str(directory / "train-00000-of-00001.tfrecord")]
  assert manifest.mean_image().shape == (4, 4, 3)
  with pytest.raises(manifest_lib.ManifestError, match="no split 'test'"):
    manifest.num_examples("test")


def test_missing_manifest_means_incomplete(tmp_path):
  with pytest.raises(manifest_lib.ManifestError, match="manifest.json: not found"):
    manifest_lib.load(str(tmp_path))


def test_truncated_shard_is_caught_by_size(dataset):
  directory, _ = dataset
  (directory / "train-00000-of-00001.tfrecord").write_bytes(b"records")
  with pytest.raises(manifest_lib.ManifestError, match="train-00000-of-00001.tfrecord: 7 bytes"):
    manifest_lib.load(str(directory))


def test_replaced_shard_is_caught_by_hash(dataset):
  directory, _ = dataset
  (directory / "train-00000-of-00001.tfrecord").write_bytes(b"RECORDS" * 10)
  manifest_lib.load(str(directory))  # Same size: only the hash can tell.
  with pytest.raises(manifest_lib.ManifestError, match="SHA-256 differs"):
    manifest_lib.load(str(directory), verify="sha256")


def test_missing_shard_is_named(dataset):
  directory, _ = dataset
  (directory / "train-00000-of-00001.tfrecord").unlink()
  with pytest.raises(manifest_lib.ManifestError, match="shard listed in manifest.json is missing"):
    manifest_lib.load(str(directory))
  manifest_lib.load(str(directory), verify="none")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema_version=2), "schema_version 2"),
    (lambda d: d.update(label_base=1), "label_base 1"),
    (lambda d: d["classes"].reverse(), "not 0..1 in order"),
])
def test_inconsistent_manifest_is_refused(dataset, change, message):
  directory, data = dataset
  change(data)
  _write(directory, data)
  with pytest.raises(manifest_lib.ManifestError, match=message):
    manifest_lib.load(str(directory))


def test_garbage_manifest_is_refused(dataset):
  directory, _ = dataset
  (directory / "manifest.json").write_text("{not json")
  with pytest.raises(manifest_lib.ManifestError, match="not valid JSON"):
    manifest_lib.load(str(directory))


def test_wrong_mean_shape_is_refused(dataset):
  directory, _ = dataset
  np.save(directory / "mean.npy", np.zeros((3, 3, 3), np.float32))
  with pytest.raises(manifest_lib.ManifestError, match=r"mean.npy: shape \(3, 3, 3\)"):
    manifest_lib.load(str(directory)).mean_image()
