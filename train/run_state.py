"""Around the training loop: model directory, lock, checkpoints, schedule, summaries, signals.

Kept apart from `train.py` so that the training function reads as the algorithm. Nothing here knows
about the model's layers or the data format.
"""

import contextlib
import json
import math
import os
import signal
import socket
import threading

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import text_format
from tensorflow.core.framework import summary_pb2

from train import input_pipeline
from train import restore

LOCK_NAME = "trainer.lock"
MAX_TO_KEEP = 3


class TrainingError(ValueError):
  """A problem the user can fix: the message is one line naming the file or flag at fault."""


class NonFiniteError(TrainingError):
  """The loss or the weights became NaN or infinite."""


def is_chief(strategy):
  """Whether this process writes the model directory (always, unless it is a non-chief worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0
          and "chief" not in resolver.cluster_spec().as_dict())


@contextlib.contextmanager
def model_dir_lock(model_dir, is_chief_process):
  """Holds `model_dir/trainer.lock` (pid and host) so that a second trainer is refused.

  A lock left by a dead process on this host is stale and taken over. Remote directories (gs://)
  cannot be locked atomically and are not locked.

  Raises:
    TrainingError: if another live trainer holds the lock.
  """
  if not is_chief_process or "://" in model_dir:
    if is_chief_process:
      logging.warning("%s is remote: not locked against a second trainer", model_dir)
    yield
    return
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, LOCK_NAME)
  owner = {"pid": os.getpid(), "hostname": socket.gethostname()}
  while True:
    try:
      descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      break
    except FileExistsError:
      try:
        with open(path) as f:
          holder = json.load(f)
      except (OSError, ValueError):
        holder = {}
      if holder.get("hostname") == owner["hostname"] and not _pid_alive(holder.get("pid")):
        logging.warning("%s: removing the stale lock of dead process %s", path, holder.get("pid"))
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)
        continue
      raise TrainingError(f"{path}: {model_dir} is in use by process {holder.get('pid')} on "
                          f"{holder.get('hostname')}; stop it or delete the lock file if it is dead")
  with os.fdopen(descriptor, "w") as f:
    json.dump(owner, f)
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


def _pid_alive(pid):
  try:
    os.kill(int(pid), 0)
  except (ProcessLookupError, TypeError, ValueError):
    return False
  except PermissionError:
    return True
  return True


# Settings a resumed run must keep: they shape the network or the optimisation, or (the batch size)
# the meaning of a step, which the checkpoint counts in. The learning rate is the schedule's
# state, restored from the checkpoint, so a new --learning_rate could not be honoured either. Every
# other setting (epochs, steps, logging, checkpointing, evaluation, data reading, seed, jit,
# patience) may change: it applies from the resumed step on, and the change is logged.
FIXED_ON_RESUME = ("batch_size", "learning_rate", "momentum", "weight_decay", "lr_schedule",
                   "lr_step_epochs", "dropout", "groups", "width", "precision")


def _flag_values(config):
  return {key: list(value) if isinstance(value, tuple) else value
          for key, value in vars(config).items()}


def _check_resume(path, previous_flags, flag_values):
  """Refuses a resume that changes a setting of FIXED_ON_RESUME; logs the other changes."""
  for name, value in flag_values.items():
    if name not in previous_flags or previous_flags[name] == value:
      continue
    if name in FIXED_ON_RESUME:
      raise TrainingError(f"{path}: --{name}={value} differs from the {previous_flags[name]} this "
                          f"run was started with, which a resumed run must keep; rerun with "
                          f"--{name}={previous_flags[name]} or use a new --model_dir")
    logging.info("Resuming with --%s=%s (was %s)", name, value, previous_flags[name])


def check_model_dir(config, manifest, model_dir):
  """Refuses to resume a model directory that this run's data or settings do not match.

  Raises:
    TrainingError: if config.json holds another label map or network shape than this run, or, when
      there is a checkpoint to resume from, another value of a setting of `FIXED_ON_RESUME`.
  """
  path = os.path.join(model_dir, restore.CONFIG_NAME)
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path) as f:
    previous = json.load(f)
  if previous.get("classes") != manifest.data["classes"]:
    raise TrainingError(f"{path}: this model directory was trained on a different label map "
                        f"than {manifest.directory}; use a new --model_dir")
  shape = lambda m: {k: m.get(k) for k in ("num_classes", "groups", "width")}  # noqa: E731
  model = _model_arguments(config, manifest)
  if shape(previous.get("model", {})) != shape(model):
    raise TrainingError(f"{path}: network {shape(previous['model'])} differs from this run's "
                        f"{shape(model)}; use the same --groups/--width or a new --model_dir")
  if tf.train.latest_checkpoint(os.path.join(model_dir, "ckpt")) is not None:
    _check_resume(path, previous.get("flags", {}), _flag_values(config))


def _model_arguments(config, manifest):
  return {"num_classes": manifest.num_classes, "groups": config.groups,
          "width": float(config.width), "dropout": config.dropout}


def write_model_dir(config, manifest, model_dir):
  """Writes config.json (model, classes, stats, the flags this run uses) and mean.npy."""
  tf.io.gfile.makedirs(model_dir)
  content = {"model": _model_arguments(config, manifest), "classes": manifest.data["classes"],
             "image_size": manifest.image_size, "input_size": input_pipeline.CROP_SIZE,
             "stats": manifest.stats,
             "flags": {**_flag_values(config), "shards": manifest.directory,
                       "model_dir": model_dir}}
  with tf.io.gfile.GFile(os.path.join(model_dir, restore.CONFIG_NAME), "w") as f:
    f.write(json.dumps(content, indent=1, sort_keys=True) + "\n")
  with tf.io.gfile.GFile(os.path.join(model_dir, restore.MEAN_NAME), "wb") as f:
    np.save(f, manifest.mean_image())


def create_state(config):
  """The training state checkpointed beside the model: step, epoch, schedule, random generator."""
  rng = (tf.random.Generator.from_seed(config.seed) if config.seed is not None
         else tf.random.Generator.from_non_deterministic_state())
  return {"step": tf.Variable(0, dtype=tf.int64, trainable=False),
          "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
          "learning_rate": tf.Variable(config.learning_rate, dtype=tf.float32, trainable=False),
          "best_val_error": tf.Variable(math.inf, dtype=tf.float64, trainable=False),
          "evals_since_best": tf.Variable(0, dtype=tf.int64, trainable=False),
          "lr_drops": tf.Variable(0, dtype=tf.int64, trainable=False),
          "rng": rng}


def update_schedule(config, state, val_error):
  """Records a validation error; on a plateau (`patience` evaluations) divides the rate by 10.

  Returns:
    Whether `val_error` is the best so far.
  """
  if val_error < float(state["best_val_error"].numpy()):
    state["best_val_error"].assign(val_error)
    state["evals_since_best"].assign(0)
    return True
  state["evals_since_best"].assign_add(1)
  if (config.lr_schedule == "plateau" and state["evals_since_best"].numpy() >= config.patience
      and state["lr_drops"].numpy() < config.max_lr_drops):
    state["learning_rate"].assign(state["learning_rate"] * 0.1)
    state["lr_drops"].assign_add(1)
    state["evals_since_best"].assign(0)
    logging.info("Validation error has not improved for %d evaluations: learning rate now %.3g",
                 config.patience, float(state["learning_rate"].numpy()))
  return False


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
    self.directory = os.path.join(model_dir, "ckpt")
    try:
      self.latest = tf.train.CheckpointManager(self.checkpoint, self.directory, MAX_TO_KEEP)
      self.best = tf.train.CheckpointManager(self.checkpoint, os.path.join(model_dir, "best"), 1)
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


def _plugin_metadata(plugin_name):
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


class SummaryWriters:
  """TensorBoard event files under `model_dir/train` and `model_dir/eval` (chief only).

  Written with `tf.summary.write` and TensorBoard's plugin metadata, in the layout of
  `tf.summary.scalar` and `tf.summary.image`, which need the tensorboard package at write time.
  """

  def __init__(self, model_dir, enabled):
    self.writers = {}
    if enabled:
      self.writers = {kind: tf.summary.create_file_writer(os.path.join(model_dir, kind))
                      for kind in ("train", "eval")}

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
    augmented = input_pipeline.prepare_batch(local, *prep, training=True, rng=rng)
    mirrored = input_pipeline.mirror(tf.cast(local["image"], tf.float32), local["flipped"])
    mean_window = mirrored - input_pipeline.prepare_batch(local, *prep, training=False)
    pixels = tf.cast(tf.clip_by_value(augmented + mean_window, 0, 255), tf.uint8)
    height, width = pixels.shape[1], pixels.shape[2]
    encoded = [tf.io.encode_png(image) for image in pixels]
    with self.writers["train"].as_default(step=step):
      tf.summary.write("train/augmented_inputs", tf.stack([str(width), str(height)] + encoded),
                       metadata=_plugin_metadata("images"))

  def close(self):
    for writer in self.writers.values():
      writer.close()


class StopFlag:
  """Set by SIGTERM or SIGINT (Ctrl-C); the loop checks it every step, saves and returns.

  A second signal raises KeyboardInterrupt at once: the person pressing Ctrl-C again does not want
  to wait for the save.
  """

  def __init__(self):
    self.requested = None  # The name of the signal received, once one is.

  def handle(self, signum, frame):
    del frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name
    logging.warning("%s: saving at the end of this step, then stopping (again to stop at once)",
                    self.requested)

  @contextlib.contextmanager
  def installed(self, signums=(signal.SIGTERM, signal.SIGINT)):
    if threading.current_thread() is not threading.main_thread():
      yield
      return
    previous = {signum: signal.signal(signum, self.handle) for signum in signums}
    try:
      yield
    finally:
      for signum, handler in previous.items():
        signal.signal(signum, handler)
