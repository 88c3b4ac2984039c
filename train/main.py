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
from train import config as config_lib
from train.errors import TrainingError
from train import input_pipeline
from train import model as model_lib
from train.run import train

FLAGS = flags.FLAGS
# (flag, lowest, highest, whether the lowest is excluded, whether the highest is excluded); None:
# no bound. The ranges are what makes sense, not what merely runs: a negative rate trains to 1e19.
RANGES = (("epochs", 1, None, False, False), ("max_steps", 0, None, False, False),
          ("batch_size", 1, None, False, False), ("learning_rate", 0, None, True, False),
          ("momentum", 0, 1, False, True), ("weight_decay", 0, None, False, False),
          ("patience", 1, None, False, False), ("max_lr_drops", 0, None, False, False),
          ("dropout", 0, 1, False, True), ("groups", 1, None, False, False),
          ("width", 0, None, True, False), ("log_every", 1, None, False, False),
          ("checkpoint_every", 1, None, False, False), ("eval_every_epochs", 1, None, False, False),
          ("seed", 0, None, False, False), ("shuffle_buffer", 1, None, False, False),
          ("steps_per_loop", 1, None, False, False), ("warmup_steps", 0, None, False, False),
          ("bias_lr_mult", 0, None, True, False))


def _range_text(low, high, low_open, high_open):
  if high is None:
    return f"{'above' if low_open else 'at least'} {low}"
  return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _in_range(value, low, high, low_open, high_open):
  if value is None:  # --seed's default: no seed.
    return True
  above = value > low if low_open else value >= low
  below = high is None or (value < high if high_open else value <= high)
  return above and below


def _positive_increasing(values):
  try:
    epochs = [int(value) for value in values]
  except ValueError:
    return False
  return all(epoch >= 1 for epoch in epochs) and epochs == sorted(set(epochs))


def _not_a_file(path):
  return path is None or not (tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path))


def define_flags(flag_values=FLAGS):
  """Defines the trainer's flags and their validators (called only when run as a command).

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  defaults, into = config_lib.Config(), {"flag_values": flag_values}
  flags.DEFINE_string("shards", None, "Dataset directory holding manifest.json and the shards.",
                      **into)
  flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and config.json.",
                      **into)
  flags.DEFINE_integer("epochs", defaults.epochs, "Passes over the training set.", **into)
  flags.DEFINE_integer("max_steps", defaults.max_steps, "Stop after this many steps (0: no limit).",
                       **into)
  flags.DEFINE_integer("batch_size", defaults.batch_size, "Global batch size, over all replicas.",
                       **into)
  flags.DEFINE_float("learning_rate", defaults.learning_rate, "Initial learning rate.", **into)
  flags.DEFINE_float("momentum", defaults.momentum, "SGD momentum.", **into)
  flags.DEFINE_float("weight_decay", defaults.weight_decay,
                     "Weight decay added to the kernels' gradients (the paper's update rule).",
                     **into)
  flags.DEFINE_enum("lr_schedule", defaults.lr_schedule, ["plateau", "step"],
                    "plateau: divide by 10 when the validation error stops improving; step: "
                    "divide by 10 at --lr_step_epochs.", **into)
  flags.DEFINE_integer("patience", defaults.patience,
                       "Evaluations without a lower validation error before the rate drops.",
                       **into)
  flags.DEFINE_integer("max_lr_drops", defaults.max_lr_drops, "Most plateau drops of the rate.",
                       **into)
  flags.DEFINE_list("lr_step_epochs", [str(e) for e in defaults.lr_step_epochs],
                    "Epochs at which the step schedule divides the rate by 10.", **into)
  flags.DEFINE_integer("warmup_steps", defaults.warmup_steps,
                       "Steps over which the rate rises linearly from learning_rate/N to "
                       "learning_rate (0: none, as in the paper).", **into)
  flags.DEFINE_float("dropout", defaults.dropout, "Dropout rate on the outputs of fc6 and fc7.",
                     **into)
  flags.DEFINE_integer("groups", defaults.groups, "Towers of conv2, conv4, conv5 (2: the paper).",
                       **into)
  flags.DEFINE_float("width", defaults.width,
                     "Channel multiplier of every layer but fc8 (1.0: the paper's network).",
                     **into)
  flags.DEFINE_enum("bias_init", defaults.bias_init, list(model_lib.POSITIVE_BIAS),
                    "Starting bias of conv2, conv4, conv5, fc6, fc7: paper (1) or caffe "
                    "(bvlc_alexnet's 0.1).", **into)
  flags.DEFINE_enum("weight_init", defaults.weight_init, list(model_lib.WEIGHT_STDDEV_OF),
                    "Weights from N(0, 0.01) (paper), or fc6 and fc7 from N(0, 0.005) (caffe: "
                    "bvlc_alexnet's).", **into)
  flags.DEFINE_float("bias_lr_mult", defaults.bias_lr_mult,
                     "The biases' learning rate over the weights' (1: the paper; 2: Caffe's).",
                     **into)
  flags.DEFINE_bool("lighting", defaults.lighting,
                    "Add the paper's PCA colour noise to training images (bvlc_alexnet: no).",
                    **into)
  flags.DEFINE_enum("precision", defaults.precision, list(config_lib.PRECISION_POLICIES),
                    "fp32, or bf16/fp16 mixed precision (fp16 with dynamic loss scaling).", **into)
  flags.DEFINE_bool("jit", defaults.jit, "XLA-compile the forward and backward passes.", **into)
  flags.DEFINE_integer("log_every", defaults.log_every, "Steps between log lines and summaries.",
                       **into)
  flags.DEFINE_integer("checkpoint_every", defaults.checkpoint_every,
                       "Steps between checkpoints (also saved at every epoch end).", **into)
  flags.DEFINE_integer("eval_every_epochs", defaults.eval_every_epochs,
                       "Epochs between evaluations.", **into)
  flags.DEFINE_bool("ten_crop_eval", defaults.ten_crop_eval,
                    "Evaluate on the paper's ten crops instead of the central crop.", **into)
  flags.DEFINE_bool("skip_corrupt", defaults.skip_corrupt,
                    "Skip unreadable records with a warning instead of stopping; costs one "
                    "reading of the training split at start, to count what an epoch holds.",
                    **into)
  flags.DEFINE_integer("seed", defaults.seed,
                       "Seed of initialisation, shuffling and augmentation.", **into)
  flags.DEFINE_integer("shuffle_buffer", defaults.shuffle_buffer,
                       "Records in the shuffle buffer.", **into)
  flags.DEFINE_integer("steps_per_loop", defaults.steps_per_loop,
                       "Training steps per compiled call; loops end at every log line, checkpoint "
                       "and epoch end, so these stay as frequent as asked.", **into)
  flags.DEFINE_string("data_service", defaults.data_service,
                      "HOST:PORT of a tf.data service dispatcher (python -m train.data_service) "
                      "whose workers run the training input pipeline; evaluation stays local.",
                      **into)
  flags.DEFINE_bool("deterministic", defaults.deterministic,
                    "Bit-for-bit repeatable training and resumes on this machine (needs --seed; "
                    "slower). See train/run/determinism.py for what it promises.", **into)
  for name, *bounds in RANGES:
    flags.register_validator(name, lambda value, bounds=bounds: _in_range(value, *bounds),
                             f"--{name} must be {_range_text(*bounds)}", **into)
  flags.register_validator("lr_step_epochs", _positive_increasing,
                           "--lr_step_epochs must be increasing epochs of at least 1", **into)
  flags.register_validator("model_dir", _not_a_file, "--model_dir names a file, not a directory",
                           **into)
  flags.mark_flag_as_required("shards", **into)
  flags.mark_flag_as_required("model_dir", **into)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  values = {name: FLAGS[name].value for name in config_lib.Config.__dataclass_fields__}
  values["lr_step_epochs"] = tuple(int(epoch) for epoch in values["lr_step_epochs"])
  config = config_lib.Config(**values)
  try:
    if config.seed is not None:
      keras.utils.set_random_seed(config.seed)
    manifest = dataset_lib.load(FLAGS.shards)
    train.train_and_evaluate(config, manifest, FLAGS.model_dir)
  except (manifest_lib.ManifestError, TrainingError, input_pipeline.DataError) as e:
    logging.error("%s", e)
    sys.exit(1)
  except KeyboardInterrupt:  # A second Ctrl-C: the first one's save did not happen.
    logging.error("Interrupted twice: stopped at once, without saving; rerun the same command to "
                  "resume from the last checkpoint")
    sys.exit(130)


if __name__ == "__main__":
  define_flags()
  app.run(main)
