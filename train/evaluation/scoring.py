"""Scoring a network on every image of a split, during training and after it.

Takes explicit arguments (a strategy, a model, the dataset's `Preparation`, a batch size), never the
trainer's configuration, so that `train.evaluate` and the training loop share it.

`make_dataset`'s evaluation interleave mixes shards, and its batches carry no file name unless
asked. Scorers that need each image's name (ImageNet-ReaL, the score without the audit's
duplicates: `per_image.py`; the report) use `named_batches`, which streams each shard alone through
a view of the manifest listing just it, keeping file order, with the records' names in its
batches: one read of each shard. Plain evaluation is unchanged.
"""

import copy

import numpy as np
import tensorflow as tf
from absl import logging

from common import dataset as dataset_lib
from train.errors import TrainingError
from train.evaluation import metrics
from train import input_pipeline
from train import preparation


def per_crop(values, batch):
  """Regroups a batch's per-crop rows as [images, crops, ...] (crops: 1, or 10 with ten crops)."""
  images = tf.size(batch["label"])
  return tf.reshape(values, [images, tf.size(batch["flipped"]) // images, -1])


def score_images(model, batch, prep):
  """`(probabilities [images, classes], cross-entropy loss [images])` of a non-empty batch;
  ten-crop batches average the ten softmax outputs of each image."""
  images = preparation.prepare_batch(batch, prep, training=False)
  probabilities = tf.reduce_mean(per_crop(tf.nn.softmax(model(images, training=False)), batch),
                                 axis=1)
  label_probability = tf.gather(probabilities, batch["label"], axis=1, batch_dims=1)
  return probabilities, -tf.math.log(tf.maximum(label_probability, np.finfo(np.float32).tiny))


def score_batch(model, batch, prep):
  """`(probabilities [images, classes], batch_sums [4])` of a non-empty batch (`score_images`)."""
  probabilities, loss = score_images(model, batch, prep)
  return probabilities, metrics.batch_sums(loss, probabilities, batch["label"])


def eval_step(model, batch, prep):
  """One replica's evaluation: `metrics.batch_sums` of its batch."""
  # The last batch of an evaluation can leave some replicas with no images, and a convolution of
  # an empty batch fails on CPU.
  return tf.cond(
      tf.size(batch["label"]) > 0, lambda: score_batch(model, batch, prep)[1],
      lambda: tf.zeros([4]))


def make_eval_fn(strategy, model, prep):
  """The compiled distributed evaluation step (retraced once more for the partial last batch)."""

  @tf.function(reduce_retracing=True)
  def eval_fn(batch):
    stats = strategy.run(lambda b: eval_step(model, b, prep), args=(batch,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)

  return eval_fn


def evaluate_split(strategy, eval_fn, manifest, split, *, batch_size, ten_crop=False,
                   skip_corrupt=False):
  """Scores every image of a split once; returns {loss, top1, top5, count} (top-k are accuracies).

  Raises:
    TrainingError: when the number of images scored differs from the manifest's (and corrupt
      records are not being skipped).
    train.errors.CorruptDataError: naming the shard that failed to read.
  """
  totals = tf.zeros([4])
  stream = input_pipeline.Stream(split, batch_size=batch_size, training=False, ten_crop=ten_crop,
                                 skip_corrupt=skip_corrupt)
  iterator = iter(input_pipeline.distribute_dataset(strategy, manifest, stream))
  while (batch := input_pipeline.next_batch(iterator, manifest, split)) is not None:
    totals += eval_fn(batch)
  loss, top1, top5, count = totals.numpy().tolist()
  check_count(count, manifest, split, skip_corrupt)
  count = max(count, 1.0)
  return {"loss": loss / count, "top1": top1 / count, "top5": top5 / count, "count": int(count)}


def check_count(count, manifest, split, skip_corrupt=False):
  """Raises TrainingError when `count` images were scored and the manifest lists another number
  (with `skip_corrupt`, warns instead)."""
  expected = manifest.num_examples(split)
  if int(count) != expected:
    message = f"{split}: scored {int(count)} images, the manifest lists {expected}"
    if not skip_corrupt:
      raise TrainingError(message)
    logging.warning("%s (%d skipped as corrupt)", message, expected - int(count))


def shard_view(manifest, split, index):
  """A `Manifest` whose `split` lists only its shard `index` (so make_dataset keeps file order)."""
  data = copy.copy(manifest.data)
  data["splits"] = dict(data["splits"])
  split_data = dict(data["splits"][split])
  split_data["shards"] = [split_data["shards"][index]]
  split_data["num_examples"] = split_data["shards"][0]["num_examples"]
  data["splits"][split] = split_data
  return dataset_lib.Manifest(manifest.directory, data)


def named_batches(manifest, split, *, batch_size, ten_crop=False, limit_per_shard=None):
  """Every evaluation batch of a split in file order, shard by shard, with its images' names.

  Each shard is read once: its records carry their `image/filename` through the pipeline.

  Args:
    manifest: the dataset's `Manifest`.
    split: the split to read.
    batch_size: images per batch.
    ten_crop: batches of the paper's ten crops.
    limit_per_shard: read only this many records of each shard.

  Yields:
    `(shard, first record, names of the batch's images, batch)`.

  Raises:
    train.errors.CorruptDataError: naming the shard that failed to read.
  """
  for shard in range(len(manifest.shard_paths(split))):
    view = shard_view(manifest, split, shard)
    dataset = input_pipeline.make_dataset(
        view,
        input_pipeline.Stream(split, batch_size=batch_size, training=False, ten_crop=ten_crop,
                              with_filenames=True))
    if limit_per_shard is not None:
      dataset = dataset.unbatch().take(limit_per_shard).batch(batch_size)
    record, iterator = 0, iter(dataset)
    while (batch := input_pipeline.next_batch(iterator, view, split)) is not None:
      names = [name.decode() for name in batch.pop("filename").numpy()]
      yield shard, record, names, batch
      record += len(names)
