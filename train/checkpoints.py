"""The trainer's checkpoints: the latest few under `ckpt/`, the best under `best/`, all finite."""

import os

import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from train import model_dir as model_dir_lib
from train.errors import NonFiniteError
from train.errors import TrainingError

MAX_TO_KEEP = 3


def all_finite(variables):
  """Whether every value of every variable is finite."""
  return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables)


class Checkpoints:
  """The latest checkpoints (`ckpt/`, the last 3) and the best one (`best/`), restored on creation.

  Raises (on creation):
    TrainingError: if `ckpt/` holds files but no checkpoint that restores: never a silent restart.
  """

  def __init__(self, model_dir, is_chief_process, **objects):
    self.checkpoint = tf.train.Checkpoint(**objects)
    if not is_chief_process:
      # Saving is collective: other workers must save too, somewhere that is then ignored.
      model_dir = os.path.join(model_dir, "workers", str(os.getpid()))
    self.directory = os.path.join(model_dir, model_dir_lib.LATEST_SUBDIR)
    try:
      self.latest = tf.train.CheckpointManager(self.checkpoint, self.directory, MAX_TO_KEEP)
      self.best = tf.train.CheckpointManager(
          self.checkpoint, os.path.join(model_dir, model_dir_lib.BEST_SUBDIR), 1)
    except (text_format.ParseError, tf.errors.OpError) as e:
      raise TrainingError(
          f"{self.directory}: unreadable checkpoint index ({_first_line(e)})") from None
    prefix = self.latest.latest_checkpoint
    if prefix is None:
      if tf.io.gfile.exists(self.directory) and tf.io.gfile.listdir(self.directory):
        raise TrainingError(f"{self.directory}: holds files but no complete checkpoint; move it "
                            "away to start from scratch")
      return
    try:
      self.checkpoint.restore(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError, IndexError, tf.errors.OpError) as e:
      raise TrainingError(f"{prefix}: cannot restore the checkpoint ({_first_line(e)})") from None
    logging.info("Resumed from %s at step %d", prefix, int(objects["step"].numpy()))

  def save(self, step, model):
    """Saves the latest checkpoint, refusing a model with a non-finite weight."""
    self._check(step, model)
    self.latest.save(checkpoint_number=step)

  def save_best(self, step, model):
    """Saves the checkpoint with the lowest validation error so far."""
    self._check(step, model)
    self.best.save(checkpoint_number=step)

  @staticmethod
  def _check(step, model):
    if not all_finite(model.weights):
      raise NonFiniteError(f"step {step}: the model has non-finite weights; not saving it")


def _first_line(error):
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0] if text.strip() else type(error).__name__
