"""Classifies image files with an exported model and prints the top-5 classes of each.

    python -m train.predict --model SAVED_MODEL_DIR IMAGE...

For each image it prints the file name, then one line per class, most probable first:

    photos/cat.jpg
      1. n02123045  0.8123  tabby, tabby cat
      ...

An image that cannot be read or decoded gets one error line on stderr naming it; the others are
still classified, and the exit status is non-zero.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import sys

import tensorflow as tf
from absl import app
from absl import flags

FLAGS = flags.FLAGS


def load_classifier(saved_model_dir):
  """Loads the serving signature of an exported model.

  Args:
    saved_model_dir: a directory written by `train.export`.

  Returns:
    The `serving_default` concrete function, taking `images` (tf.string [batch]).

  Raises:
    ValueError: if the directory does not hold such a SavedModel.
  """
  if not tf.saved_model.contains_saved_model(saved_model_dir):
    raise ValueError(f"{saved_model_dir}: not a SavedModel directory (write one with train.export)")
  loaded = tf.saved_model.load(saved_model_dir)
  if "serving_default" not in loaded.signatures:
    raise ValueError(f"{saved_model_dir}: the SavedModel has no serving_default signature")
  return loaded.signatures["serving_default"]


def classify_file(classifier, path):
  """Reads one image file and returns its most probable classes.

  Args:
    classifier: the signature from `load_classifier`.
    path: image file, local or any filesystem `tf.io.gfile` supports (e.g. gs://).

  Returns:
    `[(synset, name, probability)]`, most probable first.

  Raises:
    ValueError: if the file cannot be read or is not a decodable image.
  """
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      encoded = f.read()
  except tf.errors.OpError as err:
    raise ValueError(f"{path}: cannot read ({err.message})") from None
  # One file per call, so that a bad file is reported by name and the others still get classified.
  try:
    outputs = classifier(images=tf.constant([encoded]))
  except tf.errors.InvalidArgumentError as err:
    raise ValueError(f"{path}: not a decodable image ({_op_error_reason(err.message)})") from None
  synsets = outputs["top5_synsets"].numpy()[0]
  names = outputs["top5_names"].numpy()[0]
  probabilities = outputs["top5_probabilities"].numpy()[0]
  return [(synset.decode(), name.decode(), float(probability))
          for synset, name, probability in zip(synsets, names, probabilities)]


def _op_error_reason(message):
  """The failing op's own words (e.g. "Input is empty.") from a graph execution error message."""
  lines = [line.strip() for line in message.splitlines()]
  reasons = [
      line for line in lines
      if line and not line.startswith(("Graph execution error", "Detected at node", "<stack traces",
                                       "[[", "File "))
  ]
  return reasons[-1] if reasons else "decode error"


def format_prediction(path, predictions):
  """The printed block for one image: its path, then one numbered line per class."""
  lines = [path]
  for rank, (synset, name, probability) in enumerate(predictions, start=1):
    # A dataset without class names (not built from the devkit) names each class by its WNID.
    label = f"  {name}" if name and name != synset else ""
    lines.append(f"  {rank}. {synset}  {probability:.4f}{label}")
  return "\n".join(lines)


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give at least one image file")
  try:
    classifier = load_classifier(FLAGS.model)
  except ValueError as err:
    sys.exit(f"predict: {err}")
  failures = 0
  for path in paths:
    try:
      predictions = classify_file(classifier, path)
    except ValueError as err:
      print(f"predict: {err}", file=sys.stderr)
      failures += 1
      continue
    # The predictions are this command's output, so they go to stdout rather than the log.
    print(format_prediction(path, predictions), flush=True)
  if failures:
    sys.exit(1)


def define_flags(flag_values=FLAGS):
  """Defines the flags, only when run as a command, so that tests can import several commands.

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  flags.DEFINE_string("model", None, "SavedModel directory written by train.export.",
                      flag_values=flag_values)
  flags.mark_flag_as_required("model", flag_values=flag_values)


if __name__ == "__main__":
  define_flags()
  app.run(main)
