"""Exports a trained AlexNet as a SavedModel that classifies encoded images by itself.

    python -m train.export --model_dir DIR --output DIR [--checkpoint PATH] [--overwrite]

The `serving_default` signature takes a batch of encoded images (`images`: tf.string [batch], JPEG,
PNG, GIF, BMP or WebP) and repeats stage 1's preprocessing and the trainer's evaluation crop inside
the graph: decode to RGB (alpha over white), resize so the shorter side is 256 (antialiased
bicubic, as stage 1 does with Pillow), centre 256x256 crop, centre 227x227 crop, mean subtraction,
network, softmax. Its outputs are `probabilities` [batch, num_classes] and the
`k = min(5, num_classes)` most probable classes as `top5_labels`, `top5_probabilities`,
`top5_synsets` and `top5_names`. The class list is also written as `assets.extra/classes.json` in
the SavedModel directory. An existing `--output` is replaced only with `--overwrite`, and only once
the new SavedModel is complete.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import json
import os
import sys

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from common import image as image_lib
from train.model_dir import directory as model_dir_lib
from train.model_dir import restore

CLASSES_NAME = "classes.json"
TOP_K = 5

FLAGS = flags.FLAGS


def _rgb_over_white(image):
  """uint8 `[h, w, 1..4]` (gray, gray+alpha, RGB, RGBA) to float32 RGB, alpha composited on white.

  Stage 1 shows transparent areas as white, as a browser does on a page; dropping alpha instead
  would expose whatever colour the encoder left under transparent pixels (often black).
  """
  channels = tf.shape(image)[-1]
  has_alpha = tf.cast(channels % 2 == 0, tf.int32)  # 2 (gray + alpha) or 4 (RGBA) channels
  image = tf.cast(image, tf.float32)
  colour = image[:, :, :channels - has_alpha]
  colour = tf.tile(colour, [1, 1, 3 // tf.shape(colour)[-1]])  # gray to RGB, RGB unchanged
  opacity = tf.where(has_alpha == 1, image[:, :, -1:] / 255.0, 1.0)
  return tf.ensure_shape(colour * opacity + 255.0 * (1.0 - opacity), [None, None, 3])


def decode_and_resize(encoded, image_size):
  """Decodes one encoded image and turns it into a stored-dataset image, as stage 1 does.

  Args:
    encoded: scalar tf.string, a JPEG, PNG, GIF (first frame), BMP or WebP file.
    image_size: side of the square images the model was trained on (256).

  Returns:
    uint8 `[image_size, image_size, 3]`: resized so the shorter side is `image_size` with
    antialiased bicubic (Pillow's BICUBIC, which `preprocess/conversion/convert.py` uses), then the
    central square.
  """
  # decode_image would decode JPEGs with libjpeg's fast integer IDCT, on average a grey level off
  # the accurate one that Pillow (stage 1) uses; the accurate one gives Pillow's pixels exactly.
  image = tf.cond(tf.io.is_jpeg(encoded),
                  lambda: tf.io.decode_jpeg(encoded, dct_method=image_lib.DCT_METHOD),
                  lambda: tf.io.decode_image(encoded, expand_animations=False))
  image = _rgb_over_white(image)
  shape = tf.cast(tf.shape(image)[:2], tf.float64)
  # Stage 1's arithmetic in Python floats: round(longer * size / shorter), half to even.
  scaled = tf.cast(tf.round(shape * image_size / tf.reduce_min(shape)), tf.int32)
  scaled = tf.maximum(scaled, image_size)
  resized = tf.image.resize(image, scaled, method="bicubic", antialias=True)
  # Bicubic overshoots; Pillow clips and rounds to uint8, and the network was trained on those.
  resized = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
  top, left = (scaled[0] - image_size) // 2, (scaled[1] - image_size) // 2
  return tf.ensure_shape(resized[top:top + image_size, left:left + image_size],
                         [image_size, image_size, 3])


class Classifier(tf.Module):
  """The exported module: a trained network and the preprocessing it expects."""

  def __init__(self, model, mean_image, classes):
    """Wraps a trained network.

    Args:
      model: Keras AlexNet taking `[batch, size, size, 3]` mean-subtracted pixels, size <= the
        mean image's.
      mean_image: float32 `[image_size, image_size, 3]`, the training set's mean image.
      classes: `[{label, synset, name}]` in label order.
    """
    super().__init__(name="classifier")
    self.model = model
    # A variable rather than a graph constant keeps the 768 KB mean out of the graph definition.
    self.mean_image = tf.Variable(mean_image, trainable=False, name="mean_image")
    self.synsets = tf.constant([c["synset"] for c in classes])
    self.names = tf.constant([c["name"] for c in classes])
    self._image_size = int(mean_image.shape[0])
    self._input_size = int(model.input_shape[1])
    self._top_k = min(TOP_K, len(classes))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
  def serve(self, images):
    """Classifies a batch of encoded images; see the module docstring for the outputs."""
    pixels = tf.map_fn(
        lambda encoded: decode_and_resize(encoded, self._image_size), images,
        fn_output_signature=tf.TensorSpec([self._image_size, self._image_size, 3], tf.uint8))
    # The trainer's evaluation crop, with the same window of the mean subtracted.
    offset = (self._image_size - self._input_size) // 2
    crops = pixels[:, offset:offset + self._input_size, offset:offset + self._input_size]
    offsets = tf.fill([tf.shape(images)[0], 2], offset)
    inputs = image_lib.subtract_mean(crops, self.mean_image, offsets=offsets)
    probabilities = tf.nn.softmax(self.model(inputs, training=False))
    top = tf.math.top_k(probabilities, k=self._top_k)
    return {
        "probabilities": probabilities,
        "top5_labels": top.indices,
        "top5_probabilities": top.values,
        "top5_synsets": tf.gather(self.synsets, top.indices),
        "top5_names": tf.gather(self.names, top.indices),
    }


def _check_output(output_dir, model_dir, overwrite):
  """Refuses an existing `output_dir` (but an empty directory) unless `overwrite`; or model_dir."""
  if not tf.io.gfile.exists(output_dir):
    return
  if tf.io.gfile.isdir(output_dir) and not tf.io.gfile.listdir(output_dir):
    return
  if not overwrite:
    kind = "a non-empty directory" if tf.io.gfile.isdir(output_dir) else "a file"
    raise ValueError(f"{output_dir}: already exists ({kind}); pass --overwrite to replace it")
  if _within(model_dir, output_dir):
    raise ValueError(f"{output_dir}: holds the model directory {model_dir}; --overwrite would "
                     "delete it")


def _within(path, directory):
  """Whether `path` is `directory` or under it: local paths made absolute, URLs (gs://) as given."""
  if "://" in directory:
    return (path.rstrip("/") + "/").startswith(directory.rstrip("/") + "/")
  return (os.path.abspath(path) + os.sep).startswith(os.path.abspath(directory) + os.sep)


def _remove(path):
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


def _save(classifier, classes, directory):
  """Writes the SavedModel and its class list to `directory`."""
  tf.saved_model.save(classifier, directory, signatures={"serving_default": classifier.serve})
  extra_dir = os.path.join(directory, "assets.extra")
  tf.io.gfile.makedirs(extra_dir)
  with tf.io.gfile.GFile(os.path.join(extra_dir, CLASSES_NAME), "w") as f:
    json.dump(classes, f, indent=1)


def export_model(model_dir, output_dir, checkpoint=None, overwrite=False):
  """Writes the SavedModel of a trained model directory.

  The model is written beside `output_dir` under a temporary name and moved into place when
  complete (a new remote `output_dir` is written in place), so a failed export leaves whatever was
  at `output_dir` untouched.

  Args:
    model_dir: the trainer's `--model_dir`.
    output_dir: the SavedModel directory to write.
    checkpoint: optional checkpoint prefix or directory (see `restore.find_checkpoint`).
    overwrite: whether to replace an existing `output_dir` (a non-empty directory or a file).

  Returns:
    The checkpoint prefix that was exported.

  Raises:
    ValueError: if `output_dir` exists, is not an empty directory and `overwrite` is False, if
      replacing it would delete `model_dir`, or if the model directory cannot be restored.
  """
  output_dir = output_dir.rstrip("/") or output_dir
  _check_output(output_dir, model_dir, overwrite)
  model, config, prefix = restore.restore_model(model_dir, checkpoint)
  mean_image = model_dir_lib.read_mean(model_dir, config["image_size"])
  classifier = Classifier(model, mean_image, config["classes"])
  # A directory of an object store (gs://) is a prefix of its files' names: renaming it copies every
  # file (TensorFlow's GCS client renames them one by one), and ram:// renames only its own name,
  # not its files. A new remote model is written in place instead, and removed if the export fails.
  in_place = "://" in output_dir and not tf.io.gfile.exists(output_dir)
  staging = output_dir if in_place else f"{output_dir}.export-{os.getpid()}"
  replaced = f"{output_dir}.replaced-{os.getpid()}"
  try:
    _save(classifier, config["classes"], staging)
  except BaseException:
    _remove(staging)
    raise
  if not in_place:
    if tf.io.gfile.exists(output_dir):
      tf.io.gfile.rename(output_dir, replaced)
    tf.io.gfile.rename(staging, output_dir)
    _remove(replaced)
  logging.info("Exported %s to %s", prefix, output_dir)
  return prefix


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    export_model(FLAGS.model_dir, FLAGS.output, FLAGS.checkpoint, FLAGS.overwrite)
  except ValueError as err:
    sys.exit(f"export: {err}")
  except tf.errors.OpError as err:  # e.g. an unwritable --output
    sys.exit(f"export: {err.message}")


def define_flags(flag_values=FLAGS):
  """Defines the flags, only when run as a command, so that tests can import several commands.

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  into = {"flag_values": flag_values}
  flags.DEFINE_string("model_dir", None, "The trainer's model directory.", **into)
  flags.DEFINE_string("output", None, "Directory to write the SavedModel to.", **into)
  flags.DEFINE_string(
      "checkpoint", None, "Checkpoint prefix or directory to export instead of the "
      "newest in model_dir/best/, or model_dir/ckpt/ if there is no best.", **into)
  flags.DEFINE_bool(
      "overwrite", False, "Replace an existing --output (a non-empty directory or a "
      "file); the old one is removed only once the new one is complete.", **into)
  flags.mark_flag_as_required("model_dir", **into)
  flags.mark_flag_as_required("output", **into)


if __name__ == "__main__":
  define_flags()
  app.run(main)
