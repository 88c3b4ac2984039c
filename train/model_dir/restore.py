"""Rebuilding a trained network from its model directory, for everything that runs after training.

The model directory (`train/model_dir/directory.py`) holds `config.json` (the model's constructor arguments
and the class list), `mean.npy` and checkpoints under `best/` (best validation error) and `ckpt/`
(latest). A checkpoint holds the optimizer and training state too; only the network is restored
here.
"""

import gc
import logging as std_logging
import os

import tensorflow as tf
from absl import logging

from train import model as model_lib
from train.model_dir import directory as model_dir_lib


def find_checkpoint(model_dir, checkpoint=None):
  """Chooses the checkpoint to restore: `checkpoint` if given, else the newest in best/, then ckpt/.

  Args:
    model_dir: the trainer's `--model_dir`.
    checkpoint: optional checkpoint prefix (e.g. `DIR/ckpt/ckpt-12`) or a checkpoint directory.

  Returns:
    A checkpoint prefix.

  Raises:
    ValueError: if there is no such checkpoint.
  """
  if checkpoint:
    if tf.io.gfile.isdir(checkpoint):
      prefix = tf.train.latest_checkpoint(checkpoint)
      if prefix is None:
        raise ValueError(f"{checkpoint}: no checkpoint in this directory")
      return prefix
    if not tf.io.gfile.exists(checkpoint + ".index"):
      raise ValueError(f"{checkpoint}: no such checkpoint ({checkpoint}.index not found)")
    return checkpoint
  for subdir in model_dir_lib.CHECKPOINT_SUBDIRS:
    prefix = tf.train.latest_checkpoint(os.path.join(model_dir, subdir))
    if prefix is not None:
      return prefix
  raise ValueError(f"{model_dir}: no checkpoint found in "
                   f"{' or '.join(s + '/' for s in model_dir_lib.CHECKPOINT_SUBDIRS)}")


def restore_model(model_dir, checkpoint=None):
  """Builds the network described by a model directory and loads its trained weights.

  Args:
    model_dir: the trainer's `--model_dir`.
    checkpoint: optional checkpoint prefix or directory overriding the default choice
      (see `find_checkpoint`).

  Returns:
    `(model, config, checkpoint_prefix)`: the Keras model with restored weights, the config dict
    and the checkpoint it was restored from.

  Raises:
    ValueError: if the config is bad, there is no checkpoint, or the checkpoint is corrupt or does
      not hold every weight of the network.
  """
  config = model_dir_lib.read_config(model_dir)
  prefix = find_checkpoint(model_dir, checkpoint)
  try:
    model = model_lib.alexnet(**config["model"])
  except TypeError as err:  # an argument alexnet() does not take
    config_path = os.path.join(model_dir, model_dir_lib.CONFIG_NAME)
    raise ValueError(f"{config_path}: bad model arguments ({err})") from None
  failure = _restore_weights(model, prefix)
  if failure:
    raise ValueError(f"{prefix}: cannot restore the model ({failure})")
  logging.info("Restored %s from %s", model.name, prefix)
  return model, config, prefix


def _restore_weights(model, prefix):
  """Restores only the network's weights from `prefix`; returns None, or why it failed."""
  tf_logger = tf.get_logger()
  saved_level = tf_logger.level
  # A failed restore leaves TF's bookkeeping to warn, when it is collected, about every checkpoint
  # value it did not restore; the one error line the caller raises already says it all.
  tf_logger.setLevel(std_logging.ERROR)
  try:
    status = tf.train.Checkpoint(model=model).restore(prefix)
    # The optimizer and training state are deliberately left unrestored: no warning about them.
    status.expect_partial()
    status.assert_existing_objects_matched()
    return None
  except AssertionError:
    return "it does not hold this network's weights"
  except (ValueError, IndexError, tf.errors.OpError) as err:
    # A truncated data file raises IndexError, a bad index an OpError, a checkpoint of another
    # architecture a ValueError (shape mismatch).
    text = str(getattr(err, "message", "") or err).strip()
    return text.splitlines()[0] if text else type(err).__name__
  finally:
    gc.collect()  # collect the failed restore's bookkeeping now, while its warnings are muted
    tf_logger.setLevel(saved_level)
