"""Unreadable shards: which shard a tf.data read error came from, and how many records of each
shard can be read (what `--skip_corrupt` keeps).

tf.data's errors name no file. Both functions pay a pass over a split's data, decoding every image,
and only when asked: `locate` after a read has failed, `count_readable` when the trainer is told to
skip corrupt records, so that an epoch is what can be read, not what the manifest lists.
"""

import tensorflow as tf
from absl import logging

from common import image as image_lib
from common import schema
from train.errors import CorruptDataError


def _decode_fn(manifest):
  """Parses and fully decodes one record: what reading it in training or evaluation needs."""
  return lambda record: image_lib.decode_image(schema.parse_example(record), manifest.encoding,
                                               image_size=manifest.image_size)


def count_readable(manifest, split):
  """Counts the records of each shard that read and decode, as `--skip_corrupt` would keep them.

  Costs a pass over the split's data; the trainer pays it only when asked to skip corrupt records,
  so that an epoch is what can be read, not what the manifest lists.

  Returns:
    `{path: (readable, listed)}` for every shard of the split.
  """
  counts = {}
  for path, shard in zip(manifest.shard_paths(split), manifest.data["splits"][split]["shards"]):
    records = tf.data.TFRecordDataset(path).ignore_errors()
    images = records.map(_decode_fn(manifest), num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    counts[path] = (int(images.reduce(0, lambda n, _: n + 1)), shard["num_examples"])
  return counts


def locate(manifest, split, error):
  """Names the shard behind a tf.data read or decode error (tf.data errors name no file).

  Reads the split's shards one by one, decoding every image, until one fails or holds a different
  number of records than the manifest lists. This costs a pass over the data, paid only on failure.

  Args:
    manifest: the dataset's `Manifest`.
    split: the split being read when `error` occurred.
    error: the `tf.errors.OpError` raised by the input pipeline.

  Returns:
    A `CorruptDataError` to raise, naming the shard when one is found.
  """
  logging.error("Input pipeline failed (%s); reading the %s shards to find the bad one",
                error.message.splitlines()[0], split)
  decode = _decode_fn(manifest)
  hint = "pass --skip_corrupt to skip unreadable records"
  for path, shard in zip(manifest.shard_paths(split), manifest.data["splits"][split]["shards"]):
    try:
      count = int(
          tf.data.TFRecordDataset(path).map(decode, num_parallel_calls=tf.data.AUTOTUNE).reduce(
              0, lambda n, _: n + 1))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      return CorruptDataError(f"{path}: {e.message.splitlines()[0].strip()}; {hint}")
    if count != shard["num_examples"]:
      return CorruptDataError(f"{path}: {count} records, the manifest lists "
                              f"{shard['num_examples']}; {hint}")
  return CorruptDataError(f"{split} shards of {manifest.directory}: "
                          f"{error.message.splitlines()[0].strip()}; {hint}")
