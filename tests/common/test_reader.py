"""`common.reader` against TensorFlow's parse and decode, and the README's PyTorch snippet."""

import collections
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from common import example_proto
from common import image as image_lib
from common import reader
from common import records
from common import schema

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _split_paths(output_dir, manifest, split):
  return [os.path.join(output_dir, s["file"]) for s in manifest["splits"][split]["shards"]]


def test_the_reader_gives_tensorflows_values_and_pixels(interop_built):
  output_dir, manifest = interop_built
  for split in manifest["splits"]:
    for path in _split_paths(output_dir, manifest, split):
      ours = list(reader.read_examples(path))
      theirs = [
          tf.io.parse_single_example(s, schema.feature_spec())
          for s in tf.data.TFRecordDataset(path)
      ]
      assert len(ours) == len(theirs) > 0
      for example, parsed in zip(ours, theirs):
        assert set(example) == set(schema.FEATURE_TYPES)
        for key, kind in schema.FEATURE_TYPES.items():
          assert type(example[key]) is kind
          assert example[key] == parsed[key].numpy(), key
        pixels = reader.decode_image(example, manifest["encoding"])
        # Pillow's default IDCT is the accurate one common.image asks TensorFlow for: no tolerance.
        np.testing.assert_array_equal(pixels,
                                      image_lib.decode_image(parsed, manifest["encoding"]).numpy())
        assert pixels.flags.writeable


def _example(features, deterministic=True):
  return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
      deterministic=deterministic)


def _values(**overrides):
  values = {key: (b"v" if kind is bytes else 7) for key, kind in schema.FEATURE_TYPES.items()}
  values.update(overrides)
  return {
      key: (tf.train.Feature(bytes_list=tf.train.BytesList(value=value)) if value and
            isinstance(value[0], bytes) else tf.train.Feature(float_list=tf.train.FloatList(
                value=value)) if value and isinstance(value[0], float) else tf.train.Feature(
                    int64_list=tf.train.Int64List(value=value))
           ) for key, value in ((k, v if isinstance(v, list) else [v]) for k, v in values.items())
  }


def test_parse_example_follows_tensorflow_on_other_writers_examples():
  extra = _values(**{
      "other/score": [0.5, 1.5], "other/ids": [1, 2, 3], schema.LABEL: -3,
      schema.ORIGINAL_WIDTH: 2**62
  })
  for serialized in (_example(extra), _example(extra, deterministic=False)):
    parsed = tf.io.parse_single_example(serialized, schema.feature_spec())
    ours = reader.parse_example(serialized)
    assert ours == {k: v.numpy() for k, v in parsed.items()}
    assert ours[schema.LABEL] == -3
  # An Int64List written unpacked (one varint field per value), as proto2 writers may.
  unpacked = bytes([0x08, 0x05])  # field 1, varint 5
  feature = bytes([0x1A, len(unpacked)]) + unpacked
  key = schema.LABEL.encode()
  entry = bytes([0x0A, len(key)]) + key + bytes([0x12, len(feature)]) + feature
  others = _example({k: v for k, v in _values().items() if k != schema.LABEL})
  _, start = example_proto._read_varint(memoryview(others), 1, "")  # past the tag and length
  body = others[start:] + bytes([0x0A, len(entry)]) + entry
  serialized = bytes([0x0A]) + example_proto._varint(len(body)) + body
  assert tf.io.parse_single_example(serialized, schema.feature_spec())[schema.LABEL] == 5
  assert reader.parse_example(serialized)[schema.LABEL] == 5


@pytest.mark.parametrize("overrides, message", [
    (dict(drop=schema.SYNSET), f"feature '{schema.SYNSET}' is missing"),
    ({schema.LABEL: [1, 2]}, f"feature '{schema.LABEL}' holds 2 values, expected 1"),
    ({schema.LABEL: b"x"}, f"feature '{schema.LABEL}' holds a bytes list, expected int64"),
    ({schema.FILENAME: [0.5]}, f"feature '{schema.FILENAME}' holds a float list, expected bytes"),
])
def test_parse_example_refuses_what_tensorflow_refuses(overrides, message):
  drop = overrides.pop("drop", None)
  features = {k: v for k, v in _values(**overrides).items() if k != drop}
  serialized = _example(features)
  with pytest.raises(tf.errors.InvalidArgumentError):
    tf.io.parse_single_example(serialized, schema.feature_spec())
  with pytest.raises(ValueError, match=f"^shard.tfrecord: record at byte 0: {re.escape(message)}$"):
    reader.parse_example(serialized, "shard.tfrecord: record at byte 0")
  with pytest.raises(ValueError, match="truncated or overlong varint|runs past the end"):
    reader.parse_example(_example(_values())[:-3])


def test_read_shards_gives_every_record_once_for_any_number_of_workers(interop_built):
  output_dir, manifest = interop_built
  for split in manifest["splits"]:  # two shards for train and validation, one for test
    paths = _split_paths(output_dir, manifest, split)
    everything = [e[schema.FILENAME] for e in reader.read_shards(paths)]
    assert len(everything) == manifest["splits"][split]["num_examples"]
    for num_workers in (2, 3):
      shares = [[e[schema.FILENAME]
                 for e in reader.read_shards(paths, w, num_workers)]
                for w in range(num_workers)]
      assert sorted(f for share in shares for f in share) == sorted(everything)
      assert all(shares), (split, num_workers)  # more workers than shards: shares of each shard


_NO_TENSORFLOW = """
import json, sys
from common import reader, records, tfds_metadata
paths, encoding = json.loads(sys.argv[1])
count = 0
for example in reader.read_shards(paths, 0, 2):
  reader.decode_image(example, encoding)
  count += 1
for path in paths:
  records.verify_index(path, records.index_name(path))
print(json.dumps([count, "tensorflow" in sys.modules]))
"""


def test_reading_and_decoding_never_load_tensorflow(interop_built):
  output_dir, manifest = interop_built
  paths = _split_paths(output_dir, manifest, "train")
  result = subprocess.run(
      [sys.executable, "-c", _NO_TENSORFLOW,
       json.dumps([paths, manifest["encoding"]])], cwd=REPO, capture_output=True, text=True,
      check=True, timeout=120)
  count, loaded = json.loads(result.stdout)
  assert count > 0 and not loaded


def _readme_block(marker):
  with open(os.path.join(REPO, "README.md")) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  (block,) = [b for b in blocks if marker in b]
  return block


# The README's dataset, iterated by a real DataLoader with two worker processes; without the
# TensorFlow this test process holds (torch and TensorFlow need not share one).
_DATALOADER = """
import hashlib, json, sys
import torch
{snippet}
seen = {{}}
for split in sys.argv[2:]:
  loader = torch.utils.data.DataLoader(ImageNetShards(sys.argv[1], split), batch_size=None,
                                       num_workers=2)
  seen[split] = [[hashlib.sha256(image.numpy().tobytes()).hexdigest(), int(label)]
                 for image, label in loader]
print(json.dumps({{"seen": seen, "tensorflow": "tensorflow" in sys.modules}}))
"""


def test_the_readme_pytorch_dataset_gives_every_record_once_over_two_workers(interop_built):
  output_dir, manifest = interop_built
  snippet = _readme_block("class ImageNetShards").split("\nloader = ")[0]
  splits = ("train", "test")  # two shards (one for each worker), one shard (a share each)
  result = subprocess.run(
      [sys.executable, "-c",
       _DATALOADER.format(snippet=snippet), output_dir, *splits], cwd=REPO, capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  found = json.loads(result.stdout)
  assert not found["tensorflow"]
  for split in splits:
    expected = [[
        hashlib.sha256(reader.decode_image(e, manifest["encoding"]).tobytes()).hexdigest(),
        e[schema.LABEL]
    ] for e in reader.read_shards(_split_paths(output_dir, manifest, split))]
    assert (collections.Counter(map(tuple, found["seen"][split])) == collections.Counter(
        map(tuple, expected)))


def test_the_readme_dali_features_are_the_schemas():
  block = _readme_block("fn.readers.tfrecord")
  listed = dict(re.findall(r'"([\w/]+)": tfrec\.FixedLenFeature\([^,]+, tfrec\.(\w+)', block))
  assert listed == {
      key: {bytes: "string", int: "int64"}[kind] for key, kind in schema.FEATURE_TYPES.items()
  }
  assert 'index_path=[s + "' + records.INDEX_SUFFIX + '"' in block
