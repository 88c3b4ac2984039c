"""TFRecord framing and the index beside each shard, against TensorFlow and the `tfrecord` package."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from common import records
from common import reader

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_frames(path, payloads):
  """A TFRecord file of `payloads` framed by `records.frame_record`, and its index."""
  offset, lines = 0, []
  with open(path, "wb") as f:
    for payload in payloads:
      framed = records.frame_record(payload)
      lines.append(records.index_line(offset, len(framed)))
      f.write(framed)
      offset += len(framed)
  with open(records.index_name(str(path)), "wb") as f:
    f.write(b"".join(lines))
  return str(path)


def _shards(manifest):
  return [(split, shard) for split, info in manifest["splits"].items() for shard in info["shards"]]


def test_frames_are_tensorflows(tmp_path):
  payloads = [b"", b"x", bytes(range(256)) * 300]
  path = _write_frames(tmp_path / "a.tfrecord", payloads)
  assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == payloads
  assert [data for _, data in records.iter_records(path)] == payloads
  with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
    for payload in payloads:
      writer.write(payload)
  assert (tmp_path / "tf.tfrecord").read_bytes() == b"".join(map(records.frame_record, payloads))
  assert records.index_line(0, 16) == b"0 16\n"
  # Any opener of seekable binary files will do: here TensorFlow's, which also reads gs:// and s3://.
  assert [data for _, data in records.iter_records(path, opener=tf.io.gfile.GFile)] == payloads
  assert records.verify_index(path, records.index_name(path), opener=tf.io.gfile.GFile) == 3


def test_the_index_lists_every_record_of_every_built_shard(interop_built):
  output_dir, manifest = interop_built
  for _, shard in _shards(manifest):
    path = os.path.join(output_dir, shard["file"])
    index = records.read_index(records.index_name(path))
    assert records.verify_index(path, records.index_name(path)) == shard["num_examples"]
    assert len(index) == shard["num_examples"]
    # Contiguous from byte 0 to the end: each length counts the 12-byte header and 4-byte CRC.
    assert [offset for offset, _ in index
           ] == [sum(n for _, n in index[:i]) for i in range(len(index))]
    assert sum(n for _, n in index) == shard["size_bytes"] == os.path.getsize(path)
    assert [offset for offset, _ in records.iter_records(path)] == [o for o, _ in index]


@pytest.mark.parametrize("damage", [
    "line_dropped", "offset_moved", "another_shards_index", "record_appended", "shard_truncated",
    "not_an_index"
])
def test_a_shard_whose_index_disagrees_is_named(tmp_path, damage):
  path = _write_frames(tmp_path / "train-00000-of-00001.tfrecord", [b"a" * 10, b"b" * 20, b"c"])
  index_path = records.index_name(path)
  with open(index_path, "rb") as f:
    lines = f.read().splitlines(keepends=True)
  if damage == "line_dropped":
    lines = lines[:-1]
  elif damage == "offset_moved":
    lines[1] = b"27 36\n"
  elif damage == "another_shards_index":
    other = _write_frames(tmp_path / "other.tfrecord", [b"a" * 10, b"b" * 21, b"c"])
    with open(records.index_name(other), "rb") as f:
      lines = f.read().splitlines(keepends=True)
  elif damage == "record_appended":
    with open(path, "ab") as f:
      f.write(records.frame_record(b"d"))
  elif damage == "shard_truncated":
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) - 1)
  elif damage == "not_an_index":
    lines = [b"0 26\n", b"26 thirty-six\n"]
  with open(index_path, "wb") as f:
    f.write(b"".join(lines))
  with pytest.raises(ValueError) as error:
    records.verify_index(path, index_path)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(path if damage != "not_an_index" else index_path), message


def test_a_corrupt_or_truncated_record_is_named_with_its_byte_offset(tmp_path):
  path = _write_frames(tmp_path / "s.tfrecord", [b"a" * 10, b"b" * 20, b"c" * 30])
  second, third = [offset for offset, _ in records.read_index(records.index_name(path))][1:]
  original = open(path, "rb").read()
  for position, expected in ((second + records.HEADER_BYTES + 3,
                              f"corrupt record at byte {second}"),
                             (second + 2, f"corrupt record length at byte {second}")):
    damaged = bytearray(original)
    damaged[position] ^= 1
    with open(path, "wb") as f:
      f.write(damaged)
    with pytest.raises(ValueError, match=f"^{path}: {expected} "):
      list(records.iter_records(path))
  with open(path, "wb") as f:
    f.write(original[:-5])
  with pytest.raises(ValueError, match=f"^{path}: truncated record at byte {third} "):
    list(records.iter_records(path))


def test_worker_shares_are_disjoint_and_together_complete(tmp_path):
  payloads = [b"%d" % i for i in range(7)]
  path = _write_frames(tmp_path / "s.tfrecord", payloads)
  index = records.read_index(records.index_name(path))
  for num_workers in range(1, 10):
    shares = [[
        data for _, data in records.iter_records(path, *records.worker_share(index, w, num_workers))
    ] for w in range(num_workers)]
    assert [data for share in shares for data in share] == payloads  # disjoint, complete, in order
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
  with pytest.raises(ValueError, match="worker 2 is not in 0..1"):
    records.worker_share(index, 2, 2)
  with pytest.raises(ValueError, match="not a record boundary"):
    list(records.iter_records(path, 0, index[1][0] + 1))


# The `tfrecord` package registers its own copy of the Example protos, which clashes with
# TensorFlow's ("duplicate symbol 'tensorflow.BytesList'"): it runs in a process without it.
_TFRECORD_PACKAGE = """
import json, sys
from tfrecord import reader
shares = {}
for path in json.loads(sys.argv[1]):
  shares[path] = [[bytes(example["image/filename"]).decode() for example in reader.tfrecord_loader(
      path, path + ".idx", {"image/filename": "byte"}, shard=(worker, 2))] for worker in range(2)]
print(json.dumps({"shares": shares, "tensorflow": "tensorflow" in sys.modules}))
"""


def test_the_tfrecord_package_reads_each_shard_through_our_index_in_two_shares(interop_built):
  output_dir, manifest = interop_built
  paths = [os.path.join(output_dir, shard["file"]) for _, shard in _shards(manifest)]
  result = subprocess.run([sys.executable, "-c", _TFRECORD_PACKAGE,
                           json.dumps(paths)], cwd=REPO, capture_output=True, text=True, check=True,
                          timeout=120)
  found = json.loads(result.stdout)
  assert not found["tensorflow"]
  for path in paths:
    ours = [e["image/filename"].decode() for e in reader.read_examples(path)]
    first, second = found["shares"][path]
    assert first and second  # every built shard holds at least two records
    assert first + second == ours  # disjoint, complete, and the same split as ours
    assert first == [
        e["image/filename"].decode()
        for e in reader.read_examples(path, records.index_name(path), 0, 2)
    ]


def test_verify_index_names_a_built_shard_given_another_shards_index(interop_built, tmp_path):
  output_dir, manifest = interop_built
  (_, first), (_, second) = _shards(manifest)[:2]
  path = shutil.copy(os.path.join(output_dir, first["file"]), tmp_path)
  with pytest.raises(ValueError, match=f"^{path}: "):
    records.verify_index(path, records.index_name(os.path.join(output_dir, second["file"])))
