"""The hand-written Example encoder gives TensorFlow's bytes, and stage 1's workers never load TF."""

import io
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import example_proto
from common import schema


def _tf_example(**record):
  """What `make_example` wrote before it had its own encoder: TensorFlow's deterministic bytes."""
  values = {
      schema.ENCODED: record["encoded"], schema.FORMAT: record["image_format"].encode(),
      schema.HEIGHT: record.get("height", schema.IMAGE_SIZE),
      schema.WIDTH: record.get("width", schema.IMAGE_SIZE),
      schema.CHANNELS_KEY: record.get("channels", schema.CHANNELS), schema.LABEL: record["label"],
      schema.SYNSET: record["synset"].encode(), schema.FILENAME: record["filename"].encode(),
      schema.ORIGINAL_HEIGHT: record["original_height"],
      schema.ORIGINAL_WIDTH: record["original_width"]
  }
  feature = {
      key:
          tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[value])) if schema.FEATURE_TYPES[key] is bytes else tf.train.Feature(
                  int64_list=tf.train.Int64List(value=[int(value)]))
      for key, value in values.items()
  }
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString(deterministic=True)


def _jpeg(seed, size):
  pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
  return buffer.getvalue()


_RAW = np.arange(256 * 256 * 3, dtype=np.uint64).astype(np.uint8).tobytes()
_RECORDS = [
    dict(encoded=_jpeg(0, (256, 256)), image_format=schema.FORMAT_JPEG, label=0, synset="n01440764",
         filename="train/n01440764/n01440764_10026.JPEG", original_height=375, original_width=500),
    dict(encoded=_RAW, image_format=schema.FORMAT_RAW, label=999, synset="n15075141",
         filename="val/ILSVRC2012_val_00050000.JPEG", original_height=1, original_width=1),
    # A filename over 127 bytes needs a two-byte length; values past 2**31 need long varints.
    dict(encoded=_jpeg(1, (64, 256)), image_format=schema.FORMAT_JPEG, label=2**40, synset="n0",
         filename="train/n02/" + "long_name_" * 30 + ".JPEG", original_height=2**63 - 1,
         original_width=2**31),
    # Unicode synsets and filenames are stored as UTF-8; a 0 is still written, as a packed zero.
    dict(encoded=b"", image_format=schema.FORMAT_JPEG, label=5, synset="n0ñ-猫",
         filename="train/ñ/é猫.JPEG", original_height=0, original_width=-1),
    dict(encoded=_RAW[:12], image_format=schema.FORMAT_RAW, label=3, synset="n3", filename="f",
         original_height=-(2**63), original_width=7, height=2, width=2, channels=3),
]


@pytest.mark.parametrize("record", _RECORDS, ids=range(len(_RECORDS)))
def test_make_example_bytes_equal_tensorflows(record):
  serialized = schema.make_example(**record)
  assert serialized == _tf_example(**record)
  parsed = tf.train.Example.FromString(serialized)
  assert parsed.features.feature[schema.LABEL].int64_list.value == [record["label"]]


def test_numpy_integers_are_written_as_ints():
  record = dict(_RECORDS[0], label=np.int64(4), original_height=np.int32(375))
  assert schema.make_example(**record) == _tf_example(**record)


@pytest.mark.parametrize("values, message", [
    ({"a": b"x"}, "expected features"),
    ({"a": b"x", "b": 2**63}, "does not fit in int64"),
    ({"a": b"x", "b": 1.5}, "expected an integer"),
    ({"a": "text", "b": 1}, "expected bytes"),
])
def test_serialize_example_rejects_bad_values(values, message):
  with pytest.raises(ValueError, match=message):
    example_proto.serialize_example(values, {"a": bytes, "b": int})


def test_stage_one_workers_do_not_import_tensorflow():
  # A fresh interpreter: this test process has TensorFlow loaded already. The modules are what a
  # Beam worker imports to run the job's DoFns (pipeline.py and what it reaches).
  code = ("import sys\n"
          "import preprocess.conversion.pipeline, preprocess.conversion.shard_writer\n"
          "import preprocess.inputs.indexing\n"
          "print('tensorflow' in sys.modules)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=120)
  assert result.stdout.strip() == "False"
