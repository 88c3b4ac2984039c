"""Trains AlexNet on the shards of `preprocess.build_shards`: the only module defining trainer flags.

  python -m train.main --flagfile=train/alexnet.flags --shards DIR --model_dir DIR

The defaults are the paper's hyperparameters, kept once, in `train.config.Config`
(`train/alexnet.flags` spells them out with their sections; a test keeps the two equal). Rerunning
the same command resumes from the model directory's latest checkpoint; SIGTERM or Ctrl-C saves at
the next step and exits 0, a second Ctrl-C stops at once. Multi-GPU and multi-machine training: see
`train/run/train.py`. Library log chatter is hidden (see `common/quiet.py`).
"""

from common import dataset as dataset_lib
from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import sys

import keras
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from common import manifest as manifest_lib
from common import settings
from train import config as config_lib
from train.errors import DataError
from train.errors import TrainingError
from train.run import train

FLAGS = flags.FLAGS


def _not_a_file(path):
  return path is None or not (tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path))


def define_flags(flag_values=FLAGS):
  """Defines the trainer's flags (called only when run as a command): the dataset and the model
  directory, and one flag per setting of `train.config.Config`, generated from its fields.

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  into = {"flag_values": flag_values}
  flags.DEFINE_string("shards", None, "Dataset directory holding manifest.json and the shards.",
                      **into)
  flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and config.json.",
                      **into)
  settings.define_flags(config_lib.Config, flag_values)
  flags.register_validator("model_dir", _not_a_file, "--model_dir names a file, not a directory",
                           **into)
  flags.mark_flag_as_required("shards", **into)
  flags.mark_flag_as_required("model_dir", **into)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = settings.from_flags(config_lib.Config, FLAGS)
  try:
    if config.seed is not None:
      keras.utils.set_random_seed(config.seed)
    manifest = dataset_lib.load(FLAGS.shards)
    train.train_and_evaluate(config, manifest, FLAGS.model_dir)
  except (manifest_lib.ManifestError, TrainingError, DataError) as e:
    logging.error("%s", e)
    sys.exit(1)
  except KeyboardInterrupt:  # A second Ctrl-C: the first one's save did not happen.
    logging.error("Interrupted twice: stopped at once, without saving; rerun the same command to "
                  "resume from the last checkpoint")
    sys.exit(130)


if __name__ == "__main__":
  define_flags()
  app.run(main)
