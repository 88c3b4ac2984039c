"""The Beam graph's pieces: listing keys every image by its shard; a retried shard write is harmless;
a finished shard is kept by the next write of it."""

import dataclasses
import os

import apache_beam as beam
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from common import records
from preprocess.conversion import convert
from preprocess.conversion import pipeline
from preprocess.conversion import resume
from preprocess.conversion import shard_writer
from preprocess.job import build
from preprocess.job import output_folder


def _config(input_dir, output_dir, synsets):
  return shard_writer.BuildConfig(input_dir=str(input_dir), output_dir=str(output_dir),
                                  tmp_dir=str(output_dir / output_folder.TMP_NAME),
                                  synsets=tuple(synsets), encoding="jpeg", quality=95,
                                  jpeg_subsampling="4:4:4", max_pixels=10**8, seed=3)


def _entries(input_dir, synsets, images):
  """Listed entries of (path, wnid) pairs, as `ListFilesFn` emits them for an extracted tree."""
  return [(pipeline.shard_key(3, p), p, synsets.index(w), os.path.getsize(input_dir / p))
          for p, w in images]


def test_listing_keys_each_image_by_split_and_path_hash(sample, tmp_path):
  input_dir, info = sample
  synsets, _, plans, _ = build.plan_input(build.BuildOptions(str(input_dir), "unused"))
  config = _config(input_dir, tmp_path, synsets)
  shard_bases, num_shards = {"train": 0, "validation": 4}, {"train": 4, "validation": 2}
  expected = []
  for split, paths in info.images.items():
    for path, wnid in list(paths) + [(p, p.split("/")[1]) for p in info.broken if split == "train"]:
      key = pipeline.shard_key(3, path)
      expected.append(
          (shard_bases[split] + key % num_shards[split], (key, path, synsets.index(wnid),
                                                          os.path.getsize(input_dir / path))))
  with test_pipeline.TestPipeline() as p:
    listed = (p | beam.Create(pipeline.listing_units(plans)) |
              beam.ParDo(pipeline.ListFilesFn(config, shard_bases, num_shards)))
    assert_that(listed, equal_to(expected))


def test_a_retried_shard_write_gives_the_same_single_file(sample, tmp_path):
  input_dir, info = sample
  synsets = list(info.classes)
  config = _config(input_dir, tmp_path, synsets)
  entries = _entries(input_dir, synsets, info.images["validation"])
  spec = shard_writer.ShardSpec("validation", 0, 1)
  first = shard_writer.write_shard(config, spec, entries)
  # A retry that finds no result (the first attempt died before writing it) converts again.
  os.remove(resume.result_path(config, spec))
  with open(tmp_path / spec.file, "rb") as f:
    first_bytes = f.read()
  second = shard_writer.write_shard(config, spec, list(reversed(entries)))
  assert first == second and not second["kept"] and second["rebuilt"] is None
  with open(tmp_path / spec.file, "rb") as f:
    assert f.read() == first_bytes
  assert sorted(os.listdir(tmp_path)) == sorted(
      [output_folder.TMP_NAME, resume.RESULTS_NAME, spec.file,
       records.index_name(spec.file)])
  assert records.verify_index(str(tmp_path / spec.file),
                              str(tmp_path / records.index_name(spec.file))) == len(entries)
  # Temporaries were renamed into place; the result (and a skip list, had a file been skipped)
  # stay for the manifest step.
  assert os.listdir(tmp_path / output_folder.TMP_NAME) == []
  assert first["num_skipped"] == 0 and first["skipped_file"] is None
  assert sorted(os.listdir(
      tmp_path / resume.RESULTS_NAME)) == [f"{spec.file}.fingerprints.npy", f"{spec.file}.json"]
  read_back = list(tf.data.TFRecordDataset(str(tmp_path / spec.file)))
  assert len(read_back) == first["num_examples"] == len(entries)


def test_a_finished_shard_is_kept_only_while_it_verifies(sample, tmp_path, monkeypatch):
  input_dir, info = sample
  synsets = list(info.classes)
  config = _config(input_dir, tmp_path, synsets)
  entries = _entries(input_dir, synsets, info.images["train"])
  spec = shard_writer.ShardSpec("train", 0, 1)
  first = shard_writer.write_shard(config, spec, entries)
  converted = []
  real = convert.convert_image
  monkeypatch.setattr(convert, "convert_image",
                      lambda *a, **k: converted.append(1) or real(*a, **k))
  kept = shard_writer.write_shard(config, spec, entries)
  assert kept["kept"] and not converted
  assert {k: v for k, v in kept.items() if k != "kept"
         } == {k: v for k, v in first.items() if k != "kept"}

  def rewrite(why, entries=entries, config=config):
    converted.clear()
    result = shard_writer.write_shard(config, spec, entries)
    assert (result["kept"], result["rebuilt"], len(converted)) == (False, why, len(entries))
    return result

  rewrite(resume.OPTIONS_DIFFER, config=dataclasses.replace(config, quality=90))
  rewrite(resume.OPTIONS_DIFFER)  # back to quality 95: the 90 result is not this run's either
  rewrite(resume.INPUTS_DIFFER, entries=entries[:-1])
  rewrite(resume.INPUTS_DIFFER)
  with open(tmp_path / spec.file, "r+b") as f:  # one flipped byte, same size
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 1]))
  rewrite(resume.SHARD_DIFFERS)
  with open(resume.stats_path(config, spec), "ab") as f:
    f.write(b"x")
  rewrite(resume.STATS_DIFFER)
  os.remove(tmp_path / records.index_name(spec.file))
  rewrite(resume.INDEX_DIFFERS)
  with open(resume.result_path(config, spec), "w") as f:
    f.write('{"split": "tr')  # torn
  assert dict(rewrite(resume.UNREADABLE), rebuilt=None) == first


def test_only_training_shards_decode_their_images_back_for_the_statistics(
    sample, tmp_path, monkeypatch):
  input_dir, info = sample
  synsets = list(info.classes)
  config = _config(input_dir, tmp_path, synsets)
  decodes = []
  real = convert._decode_stored
  monkeypatch.setattr(convert, "_decode_stored", lambda encoded: decodes.append(1) or real(encoded))
  for split in ("validation", "train"):
    entries = _entries(input_dir, synsets, info.images[split])
    result = shard_writer.write_shard(config, shard_writer.ShardSpec(split, 0, 1), entries)
    assert len(decodes) == (result["num_examples"] if split == "train" else 0)
    assert (result["stats_file"] is not None) == (split == "train")


def test_unreadable_file_is_skipped_with_its_reason(tmp_path):
  (tmp_path / "in" / "train" / "n1").mkdir(parents=True)
  config = _config(tmp_path / "in", tmp_path / "out", ["n1"])
  result = shard_writer.write_shard(config, shard_writer.ShardSpec("train", 0, 1),
                                    [(1, "train/n1/vanished.JPEG", 0, 10)])
  assert result["num_examples"] == 0
  # Counts travel in the result, the list in a file: no process gathers every shard's list.
  assert (result["num_skipped"], result["skipped_classes"]) == (1, {"n1": 1})
  assert result["skipped_reasons"] == {"unreadable": 1} and "skipped" not in result
  assert [(s["split"], s["path"], s["reason"])
          for s in shard_writer.read_skip_list(result["skipped_file"])
         ] == [("train", "train/n1/vanished.JPEG", "unreadable")]
