"""Loading a manifest checks the files it lists and fails with one line naming the file."""

import io
import json
import pathlib
import re

import numpy as np
import pytest

from common import dataset as dataset_lib
from common import manifest as manifest_lib
from preprocess import errors

REPO = pathlib.Path(__file__).resolve().parents[2]
KEY_TUPLES = (manifest_lib.TOP_KEYS, manifest_lib.CLASS_KEYS, manifest_lib.SPLIT_KEYS,
              manifest_lib.SHARD_KEYS, manifest_lib.SKIPPED_KEYS, manifest_lib.REPAIRED_KEYS,
              manifest_lib.STATS_KEYS, manifest_lib.RESUME_KEYS, manifest_lib.SUBSET_KEYS,
              manifest_lib.AUDIT_KEYS, manifest_lib.DROPPED_KEYS)


@pytest.fixture
def dataset(tmp_path):
  shard = tmp_path / "train-00000-of-00001.tfrecord"
  shard.write_bytes(b"records" * 10)
  np.save(tmp_path / "mean.npy", np.full((4, 4, 3), 100, np.float32))
  shards = [manifest_lib.make_shard(shard.name, 3, 70, dataset_lib.file_sha256(str(shard)))]
  data = manifest_lib.make_manifest(
      image_size=4, encoding="JPEG", synsets=["n1", "n2"], names={"n1": "one", "n2": "two"},
      splits={"train": manifest_lib.make_split(shards, {"n1": 2, "n2": 1})}, stats={
          "mean_file": "mean.npy", "num_images": 3, "channel_mean": [100.0] * 3,
          "rgb_covariance": np.eye(3).tolist(), "rgb_eigval": [1.0] * 3,
          "rgb_eigvec": np.eye(3).tolist()
      })
  (tmp_path / "manifest.json").write_text(manifest_lib.dumps(data))
  return tmp_path, data


def _write(directory, data):
  (directory / "manifest.json").write_text(json.dumps(data))


def test_load_reads_what_the_trainer_needs(dataset):
  directory, _ = dataset
  manifest = dataset_lib.load(str(directory), verify="sha256")
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
    dataset_lib.load(str(tmp_path))


def test_truncated_shard_is_caught_by_size(dataset):
  directory, _ = dataset
  (directory / "train-00000-of-00001.tfrecord").write_bytes(b"records")
  with pytest.raises(manifest_lib.ManifestError, match="train-00000-of-00001.tfrecord: 7 bytes"):
    dataset_lib.load(str(directory))


def test_replaced_shard_is_caught_by_hash(dataset):
  directory, _ = dataset
  (directory / "train-00000-of-00001.tfrecord").write_bytes(b"RECORDS" * 10)
  dataset_lib.load(str(directory))  # Same size: only the hash can tell.
  with pytest.raises(manifest_lib.ManifestError, match="SHA-256 differs"):
    dataset_lib.load(str(directory), verify="sha256")


def test_missing_shard_is_named(dataset):
  directory, _ = dataset
  (directory / "train-00000-of-00001.tfrecord").unlink()
  with pytest.raises(manifest_lib.ManifestError, match="shard listed in manifest.json is missing"):
    dataset_lib.load(str(directory))
  dataset_lib.load(str(directory), verify="none")


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
    dataset_lib.load(str(directory))


def test_garbage_manifest_is_refused(dataset):
  directory, _ = dataset
  (directory / "manifest.json").write_text("{not json")
  with pytest.raises(manifest_lib.ManifestError, match="not valid JSON"):
    dataset_lib.load(str(directory))


def test_wrong_mean_shape_is_refused(dataset):
  directory, _ = dataset
  np.save(directory / "mean.npy", np.zeros((3, 3, 3), np.float32))
  with pytest.raises(manifest_lib.ManifestError, match=r"mean.npy: shape \(3, 3, 3\)"):
    dataset_lib.load(str(directory)).mean_image()


def _names(text):
  """Key names in a layout fragment, with nested {...} and [...] groups and <placeholders> removed."""
  text = re.sub(r"<[a-z]+>:?", "", text)
  group = re.compile(r"[\[{][^\[\]{}]*[\]}]")
  while group.search(text):
    text = group.sub("", text)
  return tuple(re.findall(r"[a-z][a-z0-9_]*", text))


def test_docstring_layout_is_exactly_the_key_tuples():
  doc = manifest_lib.__doc__
  block = doc[doc.index("  schema_version"):doc.index("\n\n", doc.index("  schema_version"))]
  groups = {
      name: re.search(rf"\b{name} \[?\{{([^{{}}]*)\}}", block).group(1)
      for name in ("classes", "shards", "skipped", "repaired", "stats", "resume", "subset", "audit")
  }
  assert _names(groups["classes"]) == manifest_lib.CLASS_KEYS
  assert _names(groups["shards"]) == manifest_lib.SHARD_KEYS
  assert _names(groups["skipped"]) == manifest_lib.SKIPPED_KEYS
  assert _names(groups["repaired"]) == manifest_lib.REPAIRED_KEYS
  assert _names(groups["stats"]) == manifest_lib.STATS_KEYS
  assert _names(groups["resume"]) == manifest_lib.RESUME_KEYS
  assert _names(groups["subset"]) == manifest_lib.SUBSET_KEYS
  assert _names(groups["audit"]) == manifest_lib.AUDIT_KEYS
  split = re.search(r"\{<split>: \{(.*)\}\}", block, re.DOTALL).group(1)
  assert _names(split) == manifest_lib.SPLIT_KEYS
  assert _names(block) == manifest_lib.TOP_KEYS


def test_workspace_names_exactly_the_keys_and_skip_reasons():
  text = (REPO / "WORKSPACE.md").read_text()
  section = text[text.index("### `manifest.json`"):text.index("\n### ", text.index("### `manifest")
                                                             )]
  named = set(re.findall(r"`([a-z][a-z0-9_]*)`", section))
  builders = {"make_manifest", "make_split", "make_shard", "make_resume", "parse", "load"}
  assert named == set().union(*KEY_TUPLES) | set(errors.REASONS) | builders


def test_builders_write_and_load_reads_the_same_layout(dataset):
  directory, data = dataset
  assert set(data) == set(manifest_lib.TOP_KEYS)
  assert set(data["splits"]["train"]) == set(manifest_lib.SPLIT_KEYS)
  assert data["splits"]["train"]["files_seen"] == 3
  assert dataset_lib.load(str(directory)).data == data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("ignored_files"), r"manifest.json: missing keys \['ignored_files'\]"),
    (lambda d: d["splits"]["train"].pop("layout"), r"splits.train: missing keys \['layout'\]"),
    (lambda d: d["splits"]["train"]["shards"][0].update(extra=1),
     r"splits.train.shards: unknown keys \['extra'\]"),
])
def test_a_manifest_off_the_layout_is_neither_written_nor_read(dataset, change, message):
  directory, data = dataset
  change(data)
  with pytest.raises(manifest_lib.ManifestError, match=message.replace("manifest.json", "write")):
    manifest_lib.dumps(data)
  (directory / "manifest.json").write_text(json.dumps(data))
  with pytest.raises(manifest_lib.ManifestError, match=message):
    dataset_lib.load(str(directory))


def test_split_builder_refuses_inconsistent_counts():
  shards = [manifest_lib.make_shard("a.tfrecord", 2, 10, "")]
  with pytest.raises(ValueError, match="shards hold 2 records, class counts add up to 3"):
    manifest_lib.make_split(shards, {"n1": 3})


def test_a_manifest_from_before_archive_input_reads_as_extracted(dataset):
  directory, data = dataset
  del data["splits"]["train"]["input"]
  (directory / "manifest.json").write_text(json.dumps(data))
  assert dataset_lib.load(str(directory)).data["splits"]["train"]["input"] == "extracted"


def test_a_manifest_from_before_subsets_reads_as_the_whole_release(dataset):
  directory, data = dataset
  assert data.pop("subset") == {}
  (directory / "manifest.json").write_text(json.dumps(data))
  assert dataset_lib.load(str(directory)).data["subset"] == {}
  data["subset"] = {"name": "imagenette"}
  with pytest.raises(manifest_lib.ManifestError, match=r"subset: missing keys \['digest'"):
    manifest_lib.dumps(data)


def _small_manifest():
  # A class name and an option that spell the marker the writer splits at, inside strings.
  return manifest_lib.make_manifest(image_size=256, encoding="JPEG", synsets=["n1", "n2"],
                                    names={"n1": "a", "n2": '\n "skipped": [],\n'}, splits={},
                                    args={"skipped": []})


@pytest.mark.parametrize("count", [0, 1, 3])
def test_streamed_skip_list_writes_the_bytes_of_dumps(count):
  skipped = [{
      "split": "train", "path": f"train/n1/{i}é.JPEG", "reason": "empty",
      "detail": 'a "quoted"\nline'
  } for i in range(count)]
  out = io.BytesIO()
  assert manifest_lib.write(_small_manifest(), out, iter(skipped)) == count
  assert out.getvalue() == manifest_lib.dumps(dict(_small_manifest(), skipped=skipped)).encode()


def test_streamed_skip_list_refuses_disorder_and_a_second_list():
  entry = {"split": "train", "path": "train/n1/b.JPEG", "reason": "empty", "detail": ""}
  with pytest.raises(ValueError, match="out of order"):
    manifest_lib.write(_small_manifest(), io.BytesIO(), [entry, dict(entry, path="train/n1/a")])
  with pytest.raises(ValueError, match="already holds"):
    manifest_lib.write(dict(_small_manifest(), skipped=[entry]), io.BytesIO(), [])
