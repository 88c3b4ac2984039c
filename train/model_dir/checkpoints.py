"""The trainer's checkpoints: the latest few under `ckpt/`, the best under `best/`, all finite."""

import os
import tempfile

import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from train.errors import NonFiniteError
from train.errors import TrainingError
from train.model_dir import directory as model_dir_lib

MAX_TO_KEEP = 3
# Training state added after checkpoints were first written: a checkpoint without an entry restores
# the rest, the entry keeping its initial value (no time at chance, the dropout seeds' first state).
LATER_ADDITIONS = ("chance_since", "chance_partial", "epochs_at_chance", "dropout_seeds", "dead_at")


def read_run_state(model_dir):
  """What the latest checkpoint says of the run: the steps trained, full epochs, the step
  from which it was at chance and the step at which it was found dead (each None when it was not,
  or the checkpoint predates the check).

  Returns:
    `{"step", "epoch", "chance_since", "dead_at"}`, or None when `model_dir/ckpt/` holds no
    checkpoint.
  """
  prefix = tf.train.latest_checkpoint(os.path.join(model_dir, model_dir_lib.LATEST_SUBDIR))
  if prefix is None:
    return None
  reader = open_checkpoint(prefix)
  value = lambda name: (
      int(reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))  # noqa: E731
      if reader.has_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE") else None)
  since, dead_at = value("chance_since"), value("dead_at")
  return {
      "step": value("step"), "epoch": value("epoch"),
      "chance_since": since if since is not None and since >= 0 else None,
      "dead_at": dead_at if dead_at is not None and dead_at >= 0 else None
  }


def open_checkpoint(prefix):
  """A reader of the checkpoint at `prefix` (e.g. `DIR/ckpt/ckpt-12`).

  `tf.train.load_checkpoint` first asks whether `prefix` is a directory, and a filesystem without
  real directories (TensorFlow's ram://, the tests' stand-in for gs://) says yes to any prefix of
  a file's name, `ckpt-12` of `ckpt-12.index`; a prefix needs no such guess.
  """
  return tf.compat.v1.train.NewCheckpointReader(prefix)


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
    self.chief, self.saved_step = is_chief_process, None
    self.directory = os.path.join(model_dir, model_dir_lib.LATEST_SUBDIR)
    save_dir = model_dir
    if not is_chief_process:
      # Saving is collective: other workers must save too, somewhere of their own that is then
      # deleted (at exit), outside the model directory where only the chief writes.
      self._scratch = tempfile.TemporaryDirectory(prefix="alexnet-worker-")
      save_dir = self._scratch.name
    try:
      # Every worker restores from the chief's checkpoints, so all resume at the same step.
      self.reader = tf.train.CheckpointManager(self.checkpoint, self.directory, MAX_TO_KEEP)
      self.latest = (self.reader if is_chief_process else tf.train.CheckpointManager(
          self.checkpoint, os.path.join(save_dir, model_dir_lib.LATEST_SUBDIR), MAX_TO_KEEP))
      self.best = tf.train.CheckpointManager(self.checkpoint,
                                             os.path.join(save_dir, model_dir_lib.BEST_SUBDIR), 1)
    except (text_format.ParseError, tf.errors.OpError) as e:
      raise TrainingError(
          f"{self.directory}: unreadable checkpoint index ({_first_line(e)})") from None
    prefix = self.reader.latest_checkpoint
    if prefix is None:
      if tf.io.gfile.exists(self.directory) and tf.io.gfile.listdir(self.directory):
        raise TrainingError(f"{self.directory}: holds files but no complete checkpoint; move it "
                            "away to start from scratch")
      return
    try:
      held = {name.split("/", 1)[0] for name in open_checkpoint(prefix).get_variable_to_shape_map()}
      missing = [name for name in LATER_ADDITIONS if name in objects and name not in held]
      restorer = self.checkpoint if not missing else tf.train.Checkpoint(
          **{name: value for name, value in objects.items() if name not in missing})
      restorer.restore(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError, IndexError, tf.errors.OpError) as e:
      raise TrainingError(f"{prefix}: cannot restore the checkpoint ({_first_line(e)})") from None
    logging.info("Resumed from %s at step %d", prefix, int(objects["step"].numpy()))

  def save(self, step, model):
    """Saves the latest checkpoint (once per step), refusing a model with a non-finite weight."""
    if step == self.saved_step:  # e.g. a SIGTERM in a step that ended an epoch.
      return
    self._check(step, model)
    self.latest.save(checkpoint_number=step)
    self.saved_step = step

  def save_best(self, step, model):
    """Saves the checkpoint with the lowest validation error so far."""
    self._check(step, model)
    self.best.save(checkpoint_number=step)

  def paths(self):
    """Where the latest and best checkpoints are, for the last log line (the chief's files)."""
    if not self.chief:
      return f"written by the chief under {self.directory}", "written by the chief"
    return (self.latest.latest_checkpoint, self.best.latest_checkpoint or
            "none (no validation yet)")

  @staticmethod
  def _check(step, model):
    if not all_finite(model.weights):
      raise NonFiniteError(f"step {step}: the model has non-finite weights; not saving it")


def _first_line(error):
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0] if text.strip() else type(error).__name__
