"""Trains AlexNet on the shards of `preprocess.build_shards`: the only module defining trainer flags.

  python -m train.main --flagfile=train/alexnet.flags --shards DIR --model_dir DIR

The defaults are the paper's hyperparameters (`train/alexnet.flags` spells them out with their
sections). Rerunning the same command resumes from the model directory's latest checkpoint; SIGTERM
saves and exits 0. Multi-GPU and multi-machine training: see `train/train.py`.
"""

import sys

import keras
from absl import app
from absl import flags
from absl import logging

from common import manifest as manifest_lib
from train import input_pipeline
from train import run_state
from train import train

DEFAULTS = train.Config()

flags.DEFINE_string("shards", None, "Dataset directory holding manifest.json and the shards.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and config.json.")
flags.DEFINE_integer("epochs", DEFAULTS.epochs, "Passes over the training set.")
flags.DEFINE_integer("max_steps", DEFAULTS.max_steps, "Stop after this many steps (0: no limit).")
flags.DEFINE_integer("batch_size", DEFAULTS.batch_size, "Global batch size, over all replicas.")
flags.DEFINE_float("learning_rate", DEFAULTS.learning_rate, "Initial learning rate.")
flags.DEFINE_float("momentum", DEFAULTS.momentum, "SGD momentum.")
flags.DEFINE_float("weight_decay", DEFAULTS.weight_decay,
                   "Weight decay added to the kernels' gradients (the paper's update rule).")
flags.DEFINE_enum("lr_schedule", DEFAULTS.lr_schedule, ["plateau", "step"],
                  "plateau: divide by 10 when the validation error stops improving; step: divide "
                  "by 10 at --lr_step_epochs.")
flags.DEFINE_integer("patience", DEFAULTS.patience,
                     "Evaluations without a lower validation error before the rate drops.")
flags.DEFINE_integer("max_lr_drops", DEFAULTS.max_lr_drops, "Most plateau drops of the rate.")
flags.DEFINE_list("lr_step_epochs", [str(e) for e in DEFAULTS.lr_step_epochs],
                  "Epochs at which the step schedule divides the rate by 10.")
flags.DEFINE_float("dropout", DEFAULTS.dropout, "Dropout rate on the outputs of fc6 and fc7.")
flags.DEFINE_integer("groups", DEFAULTS.groups, "Towers of conv2, conv4, conv5 (2: the paper).")
flags.DEFINE_float("width", DEFAULTS.width,
                   "Channel multiplier of every layer but fc8 (1.0: the paper's network).")
flags.DEFINE_enum("precision", DEFAULTS.precision, list(train.PRECISION_POLICIES),
                  "fp32, or bf16/fp16 mixed precision (fp16 with dynamic loss scaling).")
flags.DEFINE_bool("jit", DEFAULTS.jit, "XLA-compile the forward and backward passes.")
flags.DEFINE_integer("log_every", DEFAULTS.log_every, "Steps between log lines and summaries.")
flags.DEFINE_integer("checkpoint_every", DEFAULTS.checkpoint_every,
                     "Steps between checkpoints (also saved at every epoch end).")
flags.DEFINE_integer("eval_every_epochs", DEFAULTS.eval_every_epochs, "Epochs between evaluations.")
flags.DEFINE_bool("ten_crop_eval", DEFAULTS.ten_crop_eval,
                  "Evaluate on the paper's ten crops instead of the central crop.")
flags.DEFINE_bool("skip_corrupt", DEFAULTS.skip_corrupt,
                  "Skip unreadable records with a warning instead of stopping.")
flags.DEFINE_integer("seed", DEFAULTS.seed, "Seed of initialisation, shuffling and augmentation.")
flags.DEFINE_integer("shuffle_buffer", DEFAULTS.shuffle_buffer, "Records in the shuffle buffer.")
for _name in ("epochs", "batch_size", "patience", "log_every", "checkpoint_every",
              "eval_every_epochs", "shuffle_buffer"):
  flags.register_validator(_name, lambda value: value >= 1, f"--{_name} must be at least 1")
flags.register_validator("width", lambda value: value > 0, "--width must be positive")
flags.register_validator("lr_step_epochs", lambda value: all(v.isdigit() for v in value),
                         "--lr_step_epochs must be a comma-separated list of epochs")
flags.mark_flag_as_required("shards")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  values = {name: FLAGS[name].value for name in train.Config.__dataclass_fields__}
  values["lr_step_epochs"] = tuple(int(epoch) for epoch in values["lr_step_epochs"])
  config = train.Config(**values)
  try:
    if config.seed is not None:
      keras.utils.set_random_seed(config.seed)
    manifest = manifest_lib.load(FLAGS.shards)
    train.train_and_evaluate(config, manifest, FLAGS.model_dir)
  except (manifest_lib.ManifestError, run_state.TrainingError,
          input_pipeline.DataError) as e:
    logging.error("%s", e)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
