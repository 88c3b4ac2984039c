"""The TFDS files: what TFDS's own writer gives, and `tfds.builder_from_directory` reads the shards."""

import copy
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from common import image as image_lib
from common import reader
from common import schema
from common import tfds_metadata


def _tfds_features(manifest):
  """The features TFDS needs for our records, written out by hand from the TFDS documentation."""
  size, channels = manifest["image_size"], schema.CHANNELS
  image = (tfds.features.Image(shape=(size, size, channels), encoding_format="jpeg")
           if manifest["encoding"] == schema.FORMAT_JPEG else tfds.features.Tensor(
               shape=(size, size, channels), dtype=tf.uint8, encoding=tfds.features.Encoding.BYTES))
  text, scalar = tfds.features.Text(), tfds.features.Scalar(dtype=tf.int64)
  return tfds.features.FeaturesDict({
      "image/encoded":
          image, "image/format":
              text, "image/height":
                  scalar, "image/width":
                      scalar, "image/channels":
                          scalar,
      "image/class/label":
          tfds.features.ClassLabel(names=[c["synset"] for c in manifest["classes"]]),
      "image/class/synset":
          text, "image/filename":
              text, "image/original/height":
                  scalar, "image/original/width":
                      scalar
  })


def test_the_files_are_what_tfds_writes_for_our_shards(interop_built, tmp_path):
  output_dir, manifest = interop_built
  for info in manifest["splits"].values():  # TFDS's writer reads the shard files' names
    for shard in info["shards"]:
      os.symlink(os.path.join(output_dir, shard["file"]), tmp_path / shard["file"])
  template = tfds.core.ShardedFileTemplate(data_dir=tmp_path,
                                           template=tfds_metadata.FILEPATH_TEMPLATE,
                                           dataset_name=tfds_metadata.DATASET_NAME,
                                           filetype_suffix=tfds_metadata.FILE_FORMAT)
  split_infos = [
      tfds.core.SplitInfo(name=split, filename_template=template,
                          shard_lengths=[s["num_examples"]
                                         for s in info["shards"]],
                          num_bytes=sum(s["size_bytes"]
                                        for s in info["shards"]))
      for split, info in manifest["splits"].items()
  ]
  tfds.folder_dataset.write_metadata(data_dir=tmp_path, features=_tfds_features(manifest),
                                     split_infos=split_infos, filename_template=template,
                                     check_data=False, description=tfds_metadata.DESCRIPTION,
                                     supervised_keys=(schema.ENCODED, schema.LABEL))
  ours = tfds_metadata.metadata_files(manifest)
  assert set(ours) == set(tfds_metadata.FILE_NAMES)
  for name, data in ours.items():
    assert data == (tmp_path / name).read_bytes(), name


def _accurate_decoder():

  @tfds.decode.make_decoder()
  def accurate_jpeg(serialized, feature):
    del feature
    return tf.io.decode_jpeg(serialized, channels=schema.CHANNELS, dct_method=image_lib.DCT_METHOD)

  return accurate_jpeg()


def test_tfds_reads_every_split_as_the_manifest_and_our_decode_say(interop_built):
  output_dir, manifest = interop_built
  builder = tfds.builder_from_directory(output_dir)
  assert builder.info.features[schema.LABEL].names == [c["synset"] for c in manifest["classes"]]
  assert {s: i.num_examples for s, i in builder.info.splits.items()
         } == {s: i["num_examples"] for s, i in manifest["splits"].items()}
  jpeg = manifest["encoding"] == schema.FORMAT_JPEG
  # TFDS's Image decodes with TensorFlow's default fast IDCT; README.md gives this decoder for
  # exactly common.image's pixels. RAW needs none.
  decoders = {schema.ENCODED: _accurate_decoder()} if jpeg else None
  for split, info in manifest["splits"].items():
    examples = list(
        tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)))
    stored = [
        e for shard in info["shards"]
        for e in reader.read_examples(os.path.join(output_dir, shard["file"]))
    ]
    assert len(examples) == len(stored) == info["num_examples"]
    assert set(examples[0]) == set(schema.FEATURE_TYPES)
    for example, record in zip(examples, stored):
      parsed = {key: tf.constant(value) for key, value in record.items()}
      np.testing.assert_array_equal(example[schema.ENCODED],
                                    image_lib.decode_image(parsed, manifest["encoding"]).numpy())
      for key in set(schema.FEATURE_TYPES) - {schema.ENCODED}:
        assert example[key] == record[key], key
      assert (builder.info.features[schema.LABEL].int2str(
          example[schema.LABEL]) == record[schema.SYNSET].decode())


def test_the_features_follow_the_schema(monkeypatch):
  features = tfds_metadata.features_json(schema.FORMAT_RAW, 256, 3)["featuresDict"]["features"]
  assert set(features) == set(schema.FEATURE_TYPES)
  monkeypatch.setitem(schema.FEATURE_TYPES, "image/new/count", int)
  features = tfds_metadata.features_json(schema.FORMAT_JPEG, 256, 3)["featuresDict"]["features"]
  assert features["image/new/count"]["tensor"]["dtype"] == "int64"
  monkeypatch.setitem(schema.FEATURE_TYPES, "image/new/score", float)
  with pytest.raises(ValueError, match="feature 'image/new/score': no TFDS feature"):
    tfds_metadata.features_json(schema.FORMAT_JPEG, 256, 3)


def test_a_shard_tfds_would_not_find_is_refused(interop_built):
  _, manifest = interop_built
  manifest = copy.deepcopy(manifest)
  manifest["splits"]["train"]["shards"][1]["file"] = "train-1.tfrecord"
  with pytest.raises(
      ValueError, match="'train-1.tfrecord' of split train: TFDS would look for "
      "'train-00001-of-00002.tfrecord'"):
    tfds_metadata.metadata_files(manifest)
  with pytest.raises(ValueError, match="unknown encoding 'PNG'"):
    tfds_metadata.metadata_files({**manifest, "encoding": "PNG"})


def test_the_labels_file_names_classes_by_wnid_even_when_names_repeat(interop_built):
  _, manifest = interop_built
  manifest = copy.deepcopy(manifest)
  for entry in manifest["classes"]:
    entry["name"] = "crane"  # ImageNet has two cranes and two maillots
  labels = tfds_metadata.metadata_files(manifest)[tfds_metadata.LABELS_NAME].decode().splitlines()
  assert labels == [c["synset"] for c in manifest["classes"]]
  tfds.features.ClassLabel(names=labels)  # refuses duplicates
  with pytest.raises(ValueError):
    tfds.features.ClassLabel(names=[c["name"] for c in manifest["classes"]])
  json.loads(tfds_metadata.metadata_files(manifest)[tfds_metadata.DATASET_INFO_NAME])
