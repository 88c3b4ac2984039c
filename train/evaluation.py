"""Scoring a network on every image of a split, during training and after it.

Takes explicit arguments (a strategy, a model, the dataset's `Preparation`, a batch size), never the
trainer's configuration, so that `train.evaluate` and the training loop share it.
"""

import numpy as np
import tensorflow as tf
from absl import logging

from train import data_service as data_service_lib
from train import input_pipeline
from train import metrics
from train.errors import TrainingError


def next_batch(iterator, manifest, split):
  """The iterator's next batch, or None at its end; a read error names the shard at fault."""
  try:
    return next(iterator)
  except StopIteration:
    return None
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    raise input_pipeline.locate_corrupt_shard(manifest, split, e) from None


def distribute_dataset(strategy, manifest, split, *, batch_size, training, ten_crop=False,
                       skip_corrupt=False, shuffle_buffer=10_000, seed=None, data_service=None,
                       **stream):
  """`input_pipeline.make_dataset` per input pipeline, `batch_size` (global) split over replicas.

  With `data_service` (a dispatcher's HOST:PORT) the pipeline runs on that tf.data service's
  workers: for training only, since the service's sharding may lose records (train.data_service).
  `stream` passes `make_dataset`'s `deterministic`, `start_epoch` and `skip_batches`.
  """
  def dataset_fn(context):
    dataset = input_pipeline.make_dataset(
        manifest, split, batch_size=context.get_per_replica_batch_size(batch_size),
        training=training, ten_crop=ten_crop, skip_corrupt=skip_corrupt,
        shuffle_buffer=shuffle_buffer, seed=seed, input_context=context, **stream)
    return data_service_lib.distribute(dataset, data_service) if data_service else dataset
  return strategy.distribute_datasets_from_function(dataset_fn)


def per_crop(values, batch):
  """Regroups a batch's per-crop rows as [images, crops, ...] (crops: 1, or 10 with ten crops)."""
  images = tf.size(batch["label"])
  return tf.reshape(values, [images, tf.size(batch["flipped"]) // images, -1])


def eval_step(model, batch, prep):
  """One replica's evaluation; ten-crop batches average the ten softmax outputs of each image."""
  labels = batch["label"]

  def score():
    images = input_pipeline.prepare_batch(batch, prep, training=False)
    probabilities = tf.reduce_mean(per_crop(tf.nn.softmax(model(images, training=False)), batch),
                                   axis=1)
    label_probability = tf.gather(probabilities, labels, axis=1, batch_dims=1)
    per_example = -tf.math.log(tf.maximum(label_probability, np.finfo(np.float32).tiny))
    return metrics.batch_sums(per_example, probabilities, labels)

  # The last batch of an evaluation can leave some replicas with no images, and a convolution of
  # an empty batch fails on CPU.
  return tf.cond(tf.size(labels) > 0, score, lambda: tf.zeros([4]))


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
    input_pipeline.CorruptDataError: naming the shard that failed to read.
  """
  totals = tf.zeros([4])
  iterator = iter(distribute_dataset(strategy, manifest, split, batch_size=batch_size,
                                     training=False, ten_crop=ten_crop,
                                     skip_corrupt=skip_corrupt))
  while (batch := next_batch(iterator, manifest, split)) is not None:
    totals += eval_fn(batch)
  loss, top1, top5, count = totals.numpy().tolist()
  expected = manifest.num_examples(split)
  if int(count) != expected:
    message = f"{split}: scored {int(count)} images, the manifest lists {expected}"
    if not skip_corrupt:
      raise TrainingError(message)
    logging.warning("%s (%d skipped as corrupt)", message, expected - int(count))
  count = max(count, 1.0)
  return {"loss": loss / count, "top1": top1 / count, "top5": top5 / count, "count": int(count)}
