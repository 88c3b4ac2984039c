"""End-to-end behaviour of the stage-1 build on the sample tree (in-process runner)."""

import collections
import json
import logging
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from common import dataset as dataset_lib
from common import manifest as manifest_lib
from preprocess import errors
from preprocess.conversion import convert
from preprocess.conversion import decode
from preprocess.conversion import pipeline
from preprocess.job import output_folder
from preprocess.job import report
from sample import make_sample_data
from tests import helpers

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_manifest_counts_match_a_reread_of_the_shards(sample, built):
  _, info = sample
  output_dir, manifest = built
  manifest_lib.check_layout(manifest)  # what is written is the documented layout
  assert [c["synset"] for c in manifest["classes"]] == list(info.classes)
  assert [c["label"] for c in manifest["classes"]] == list(range(len(info.classes)))
  assert manifest["classes"][info.classes.index("n02123045")]["name"] == "tabby, tabby cat"
  for split in ("train", "validation"):
    records = helpers.read_records(output_dir, split)
    counts = collections.Counter(r["image/class/synset"] for r in records)
    assert dict(counts) == manifest["splits"][split]["class_counts"]
    assert len(records) == manifest["splits"][split]["num_examples"]
    for shard in manifest["splits"][split]["shards"]:
      assert shard["num_examples"] == sum(r["shard"] == shard["file"] for r in records)
      assert shard["num_examples"] > 0
    expected = dict(info.images[split])
    assert {r["image/filename"]: r["image/class/synset"] for r in records} == expected
    for r in records:
      assert info.classes[r["image/class/label"]] == r["image/class/synset"]
      assert r["pixels"].shape == (256, 256, 3)
      assert (r["image/height"], r["image/width"], r["image/channels"]) == (256, 256, 3)


def test_every_file_is_written_skipped_or_ignored_with_its_reason(sample, built):
  input_dir, info = sample
  _, manifest = built
  on_disk = {
      os.path.relpath(os.path.join(d, f), input_dir).replace(os.sep, "/")
      for d, _, files in os.walk(input_dir)
      for f in files
      if os.path.relpath(d, input_dir).split(os.sep)[0] in ("train", "val")
  }
  written = {p for split in info.images.values() for p, _ in split}
  skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
  assert skipped == info.broken
  assert set(manifest["ignored_files"]) == set(info.ignored)
  assert manifest["ignored"] == len(info.ignored) > 0
  assert on_disk == written | set(skipped) | set(manifest["ignored_files"])
  fixes = collections.defaultdict(list)
  for r in manifest["repaired"]:
    fixes[r["path"]].append(r["fix"])
  assert {p: sorted(f) for p, f in fixes.items()} == {p: sorted(f) for p, f in info.repaired.items()}
  train = manifest["splits"]["train"]
  assert train["files_seen"] == train["num_examples"] + train["skipped"] + train["ignored"]


def test_gzip_wrapped_jpeg_is_kept(sample, built):
  _, info = sample
  output_dir, _ = built
  gzipped = [p for p, f in info.repaired.items() if decode.GUNZIP in f]
  assert gzipped
  filenames = {r["image/filename"] for r in helpers.read_records(output_dir, "train")}
  assert set(gzipped) <= filenames


def test_records_hold_the_converted_pixels(sample, built):
  input_dir, _ = sample
  output_dir, _ = built
  record = helpers.read_records(output_dir, "validation")[0]
  with open(os.path.join(input_dir, record["image/filename"]), "rb") as f:
    expected = convert.convert_image(f.read())
  # TensorFlow's decode of the stored JPEG equals the pixels the writer's statistics saw.
  np.testing.assert_array_equal(record["pixels"], expected.pixels)
  assert (record["image/original/height"],
          record["image/original/width"]) == (expected.original_height, expected.original_width)


def test_mean_and_covariance_match_a_float64_reference(built):
  output_dir, manifest = built
  images = [r["pixels"] for r in helpers.read_records(output_dir, "train")]
  mean, covariance = helpers.float64_statistics(images)
  stored_mean = dataset_lib.load(str(output_dir)).mean_image()
  np.testing.assert_allclose(stored_mean, mean, atol=1e-4)
  stats = manifest["stats"]
  assert stats["num_images"] == len(images)
  np.testing.assert_allclose(stats["channel_mean"], mean.reshape(-1, 3).mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(stats["rgb_covariance"], covariance, rtol=1e-9)
  eigval, eigvec = np.array(stats["rgb_eigval"]), np.array(stats["rgb_eigvec"])
  assert list(eigval) == sorted(eigval, reverse=True)
  np.testing.assert_allclose(covariance @ eigvec, eigvec * eigval, rtol=1e-6, atol=1e-6)


def test_records_are_ordered_by_path_hash_within_each_shard(built):
  output_dir, manifest = built
  records = helpers.read_records(output_dir, "train")
  seed = manifest["args"]["seed"]
  num_shards = len(manifest["splits"]["train"]["shards"])
  for shard in manifest["splits"]["train"]["shards"]:
    names = [r["image/filename"] for r in records if r["shard"] == shard["file"]]
    keys = [pipeline.shard_key(seed, n) for n in names]
    assert keys == sorted(keys)
    index = int(shard["file"].split("-")[1])
    assert all(k % num_shards == index for k in keys)
  first_ten = [r["image/class/synset"] for r in records[:10]]
  assert len(set(first_ten)) > 3  # classes are interleaved, not in folder order


def test_rebuilding_gives_byte_identical_output(sample, built, tmp_path):
  input_dir, _ = sample
  output_dir, _ = built
  helpers.build_dataset(input_dir, tmp_path / "again", num_shards={"train": 3})
  assert helpers.output_files(tmp_path / "again") == helpers.output_files(output_dir)


def test_a_different_seed_reorders_the_shards(sample, built, tmp_path):
  input_dir, _ = sample
  output_dir, manifest = built
  other = helpers.build_dataset(input_dir, tmp_path / "seeded", num_shards={"train": 3}, seed=7)
  assert other["splits"]["train"]["class_counts"] == manifest["splits"]["train"]["class_counts"]
  assert other["splits"]["train"]["shards"] != manifest["splits"]["train"]["shards"]


def test_raw_encoding_stores_lossless_pixels(sample, tmp_path):
  input_dir, _ = sample
  manifest = helpers.build_dataset(input_dir, tmp_path / "raw", encoding="raw")
  assert manifest["encoding"] == "RAW"
  record = helpers.read_records(tmp_path / "raw", "validation")[0]
  assert len(record["image/encoded"]) == 256 * 256 * 3
  with open(os.path.join(input_dir, record["image/filename"]), "rb") as f:
    expected = convert.convert_image(f.read(), encoding="raw")
  np.testing.assert_array_equal(record["pixels"], expected.pixels)


def test_complete_dataset_is_not_touched_without_overwrite(sample, built):
  input_dir, _ = sample
  output_dir, _ = built
  before = {n: os.stat(output_dir / n).st_mtime_ns for n in os.listdir(output_dir)}
  with pytest.raises(errors.BuildError, match="--overwrite"):
    helpers.build_dataset(input_dir, output_dir)
  assert {n: os.stat(output_dir / n).st_mtime_ns for n in os.listdir(output_dir)} == before


def test_overwrite_leaves_no_stale_shard(sample, tmp_path):
  input_dir, _ = sample
  helpers.build_dataset(input_dir, tmp_path / "out", num_shards={"train": 3})
  (tmp_path / "out" / "notes.txt").write_text("mine")
  manifest = helpers.build_dataset(input_dir, tmp_path / "out", num_shards={"train": 2},
                                   overwrite=True)
  shards = sorted(n for n in os.listdir(tmp_path / "out") if n.endswith(".tfrecord"))
  assert shards == sorted(
      s["file"] for split in manifest["splits"].values() for s in split["shards"])
  assert "train-00000-of-00002.tfrecord" in shards
  assert (tmp_path / "out" / "notes.txt").read_text() == "mine"  # not ours: left alone


def test_leftovers_of_a_killed_run_are_cleaned_up(sample, built, tmp_path):
  input_dir, _ = sample
  output_dir = tmp_path / "out"
  (output_dir / output_folder.TMP_NAME).mkdir(parents=True)
  (output_dir / output_folder.TMP_NAME /
   "train-00001-of-00003.tfrecord.deadbeef").write_bytes(b"partial")
  (output_dir / "train-00000-of-00005.tfrecord").write_bytes(b"from a run with other flags")
  helpers.build_dataset(input_dir, output_dir, num_shards={"train": 3})
  assert helpers.output_files(output_dir) == helpers.output_files(built[0])
  assert not (output_dir / output_folder.TMP_NAME).exists()


def test_mostly_bad_input_fails_after_writing_the_report(tmp_path):
  for i in range(6):
    path = tmp_path / "in" / "train" / "n00000001" / f"x_{i}.JPEG"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<html>not an image</html>")
  with pytest.raises(errors.BuildError, match="max_skip_fraction"):
    helpers.build_dataset(tmp_path / "in", tmp_path / "out")
  assert not (tmp_path / "out" / manifest_lib.MANIFEST_NAME).exists()
  report = json.loads((tmp_path / "out" / output_folder.REPORT_NAME).read_text())
  assert {s["reason"] for s in report["skipped"]} == {errors.UNIDENTIFIED}
  assert len(report["skipped"]) == 6


def test_too_many_shards_is_refused(sample, tmp_path):
  input_dir, _ = sample
  with pytest.raises(errors.BuildError, match="num_shards_validation"):
    helpers.build_dataset(input_dir, tmp_path / "out", num_shards={"validation": 1000})


def test_default_shard_count_gives_no_empty_shard(sample, tmp_path):
  input_dir, _ = sample
  manifest = helpers.build_dataset(input_dir, tmp_path / "out")
  for split in manifest["splits"].values():
    assert all(s["num_examples"] > 0 for s in split["shards"])


def test_a_shard_left_empty_by_skipped_files_fails_the_build_and_keeps_no_shard(tmp_path):
  # 10 good and 4 broken training files: 5 shards are planned on 14 files, but one receives only
  # broken ones.
  make_sample_data.make_sample_tree(tmp_path / "in", images_per_class_train=1,
                                    images_per_class_val=0)
  output_dir = tmp_path / "out"
  with pytest.raises(errors.BuildError) as error:
    helpers.build_dataset(tmp_path / "in", output_dir, num_shards={"train": 5})
  message = str(error.value)
  assert "\n" not in message
  assert re.search(
      r"train: 1 of 5 shards \(train-\d{5}-of-00005.tfrecord\) would be empty: "
      r"10 images written, 4 files skipped; rerun with --num_shards_train=\d", message)
  assert sorted(os.listdir(output_dir)) == [output_folder.REPORT_NAME]
  report = json.loads((output_dir / output_folder.REPORT_NAME).read_text())
  assert len(report["skipped"]) == 4
  suggested = int(re.search(r"--num_shards_train=(\d+)", message).group(1))
  manifest = helpers.build_dataset(tmp_path / "in", output_dir, num_shards={"train": suggested})
  assert all(s["num_examples"] > 0 for s in manifest["splits"]["train"]["shards"])


def test_an_unreadable_manifest_is_named_and_kept_without_overwrite(sample, built, tmp_path):
  input_dir, _ = sample
  output_dir = tmp_path / "out"
  output_dir.mkdir()
  truncated = (built[0] / manifest_lib.MANIFEST_NAME).read_bytes()[:100]
  (output_dir / manifest_lib.MANIFEST_NAME).write_bytes(truncated)
  with pytest.raises(errors.BuildError) as error:
    helpers.build_dataset(input_dir, output_dir)
  message = str(error.value)
  assert f"{output_dir / manifest_lib.MANIFEST_NAME}: not valid JSON" in message
  assert "manifest is unreadable" in message and "--overwrite deletes" in message
  assert "complete dataset" not in message
  assert (output_dir / manifest_lib.MANIFEST_NAME).read_bytes() == truncated
  helpers.build_dataset(input_dir, output_dir, num_shards={"train": 3}, overwrite=True)
  assert helpers.output_files(output_dir) == helpers.output_files(built[0])


def test_summary_counts_repaired_files_and_fixes_apart(built, caplog):
  _, manifest = built
  train = manifest["splits"]["train"]
  fixes = [r for r in manifest["repaired"] if r["split"] == "train"]
  assert len(fixes) > train["repaired"]  # one file had two fixes
  with caplog.at_level(logging.INFO, logger="absl"):
    report.log_summary(manifest, {}, elapsed=1.0)
  assert f"repaired {train['repaired']} files with {len(fixes)} fixes (" in caplog.text


@pytest.mark.parametrize("flag, message", [
    ("--quality=0", "flag --quality=0: 0 is not an integer in the range [1, 100]"),
    ("--max_skip_fraction=nan", "flag --max_skip_fraction=nan: must be a number in [0, 1]"),
    ("--progress_seconds=nan", "flag --progress_seconds=nan: must be a finite number of seconds"),
    ("--seed=-1", "flag --seed=-1: -1 is not a non-negative integer"),
    ("--jpeg_subsampling=4:2:2",
     "flag --jpeg_subsampling=4:2:2: value should be one of <4:4:4|4:2:0>"),
    ("--direct_num_workers=-2", "--direct_num_workers=-2: must be >= 0 (0: one worker per core)"),
    ("--direct_num_workers=many", "argument --direct_num_workers: invalid int value: 'many'"),
])
def test_a_bad_numeric_flag_is_one_line_and_exit_1(sample, tmp_path, flag, message):
  input_dir, _ = sample
  result = subprocess.run([
      sys.executable, "-m", "preprocess.build_shards", f"--input_dir={input_dir}",
      f"--output_dir={tmp_path / 'out'}", flag
  ], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr and "usage:" not in result.stderr
  assert len([line for line in result.stderr.splitlines() if message in line]) == 1
  assert not (tmp_path / "out").exists()


def test_a_real_build_prints_no_beam_start_up_chatter_unless_asked(sample, tmp_path):
  input_dir, _ = sample
  chatter = ("apitools not found", "No semi_persistent_directory found",
             "Discarding unparseable args", "Logging handler created")
  outputs = {}
  for full_logs in ("", "1"):
    # Beam's local runner with two worker processes, as `make demo` runs it.
    result = subprocess.run([
        sys.executable, "-m", "preprocess.build_shards", f"--input_dir={input_dir}",
        f"--output_dir={tmp_path / f'out{full_logs}'}", "--direct_num_workers=2"
    ], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, ALEXNET_FULL_LOGS=full_logs))
    assert result.returncode == 0, result.stderr[-3000:]
    outputs[full_logs] = result.stderr
  assert not [line for line in outputs[""].splitlines() if any(c in line for c in chatter)]
  # Only our own absl lines: no E-level line (TensorFlow's `E0000 ... cuInit` without a GPU), none
  # of the workers' TensorFlow start-up lines, each naming the module that logged it.
  quiet_lines = outputs[""].splitlines()
  assert not [line for line in quiet_lines if line[:1] in "EF" and line[1:5].isdigit()]
  assert not [
      line for line in quiet_lines
      if "0000 00:00:" in line or "InitializeLog" in line or " __init__.py:" in line
  ]
  assert all(line[:1] in "IW" and line[1:5].isdigit() for line in quiet_lines), quiet_lines
  assert "images written to" in outputs[""]
  # What a worker says at start whatever extras are installed ("apitools not found" is said only
  # without apache-beam[gcp], "Logging handler created" not on every version).
  assert all(c in outputs["1"] for c in chatter[1:3])
