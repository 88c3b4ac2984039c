"""Draws the learning curves of a training run from its TensorBoard event files.

    python -m train.plot --model_dir DIR [--output FILE.png|.pdf|.svg]

Four panels against the training step: loss, top-1 error and top-5 error (training and validation),
and the learning rate on a log scale (train/report/curves.py).
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import sys

from absl import app
from absl import flags
from absl import logging

from train.report import curves

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  output = FLAGS.output or os.path.join(FLAGS.model_dir, curves.DEFAULT_OUTPUT_NAME)
  try:
    curves.plot_curves(curves.read_curves(FLAGS.model_dir), output, title=FLAGS.model_dir)
  except ValueError as err:
    sys.exit(f"plot: {err}")
  logging.info("Wrote %s", output)


def define_flags(flag_values=FLAGS):
  """Defines the flags, only when run as a command, so that tests can import several commands.

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  into = {"flag_values": flag_values}
  flags.DEFINE_string("model_dir", None, "The trainer's model directory.", **into)
  flags.DEFINE_string(
      "output", None, "Image to write, in the format its extension names (.png, "
      f".pdf, .svg, ...); default model_dir/{curves.DEFAULT_OUTPUT_NAME}.", **into)
  flags.mark_flag_as_required("model_dir", **into)


if __name__ == "__main__":
  define_flags()
  app.run(main)
