"""TensorBoard event files: the trainer's scalars and a few of its augmented input images."""

import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from train import preparation


def _plugin_metadata(plugin_name):
  return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
      plugin_name=plugin_name))


class SummaryWriters:
  """TensorBoard event files under `model_dir/train` and `model_dir/eval` (chief only).

  Written with `tf.summary.write` and TensorBoard's plugin metadata, in the layout of
  `tf.summary.scalar` and `tf.summary.image`, which need the tensorboard package at write time.
  """

  def __init__(self, model_dir, enabled):
    self.writers = {}
    if enabled:
      self.writers = {
          kind: tf.summary.create_file_writer(os.path.join(model_dir, kind))
          for kind in ("train", "eval")
      }

  def scalars(self, kind, step, values):
    """Writes `{name: value}` scalars (names such as "train/loss") to the `kind` writer."""
    if kind in self.writers:
      with self.writers[kind].as_default(step=step):
        for name, value in values.items():
          tf.summary.write(name, tf.constant(value, tf.float32),
                           metadata=_plugin_metadata("scalars"))
      self.writers[kind].flush()

  def images(self, batch, strategy, prep, step, max_images=4):
    """Writes a few augmented training crops, with the mean added back, as the network sees them."""
    if "train" not in self.writers:
      return
    local = {k: v[:max_images] for k, v in strategy.experimental_local_results(batch)[0].items()}
    rng = tf.random.Generator.from_seed(step)
    augmented = preparation.prepare_batch(local, prep, training=True, rng=rng)
    mirrored = preparation.mirror(tf.cast(local["image"], tf.float32), local["flipped"])
    mean_window = mirrored - preparation.prepare_batch(local, prep, training=False)
    pixels = tf.cast(tf.clip_by_value(augmented + mean_window, 0, 255), tf.uint8)
    height, width = pixels.shape[1], pixels.shape[2]
    encoded = [tf.io.encode_png(image) for image in pixels]
    with self.writers["train"].as_default(step=step):
      tf.summary.write("train/augmented_inputs", tf.stack([str(width), str(height)] + encoded),
                       metadata=_plugin_metadata("images"))

  def close(self):
    for writer in self.writers.values():
      writer.close()
