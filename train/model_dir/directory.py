"""The model directory: its file names, `config.json` (written and read), the mean image, the lock.

A model directory holds `config.json` (the network's arguments, the classes, the colour
statistics and the flags of the run), `mean.npy` (the training set's mean image), `trainer.lock`
while a trainer runs, checkpoints under `ckpt/` (latest) and `best/` (lowest validation error),
and TensorBoard event files under `train/` and `eval/`.
"""

import contextlib
import io
import json
import os
import socket

import numpy as np
import tensorflow as tf
from absl import logging

from common import dataset as dataset_lib
from common import manifest as manifest_lib
from common import settings
from train import config as config_lib
from train.errors import TrainingError
from train import input_pipeline

CONFIG_NAME = "config.json"
MEAN_NAME = manifest_lib.MEAN_NAME  # A copy of the dataset's mean image.
LOCK_NAME = "trainer.lock"
LATEST_SUBDIR, BEST_SUBDIR = "ckpt", "best"
# Searched in this order: the best validation checkpoint is the one worth exporting or evaluating.
CHECKPOINT_SUBDIRS = (BEST_SUBDIR, LATEST_SUBDIR)

# Settings a resumed run must keep: they shape the network or the optimisation, or (the batch size)
# the meaning of a step, which the checkpoint counts in; the warm-up and the initialisation say how
# the run began, and another value would describe a run that never happened. The learning rate is
# the schedule's state, restored from the checkpoint, so a new --learning_rate could not be
# honoured either. Every other setting (epochs, steps, logging, checkpointing, evaluation, data
# reading, seed, jit, patience, deterministic) may change: it applies from the resumed step on, and
# the change is logged. Each setting says so itself (`fixed_on_resume` in train/config.py).
FIXED_ON_RESUME = settings.fixed_on_resume(config_lib.Config)


@contextlib.contextmanager
def lock(model_dir, is_chief_process):
  """Holds `model_dir/trainer.lock` (pid and host) so that a second trainer is refused.

  A lock left by a dead process on this host is stale and taken over. Remote directories (gs://)
  cannot be locked atomically and are not locked.

  Raises:
    TrainingError: if another live trainer holds the lock, or the directory cannot be written.
  """
  if not is_chief_process or "://" in model_dir:
    if is_chief_process:
      logging.warning("%s is remote: not locked against a second trainer", model_dir)
    yield
    return
  path = os.path.join(model_dir, LOCK_NAME)
  owner = {"pid": os.getpid(), "hostname": socket.gethostname()}
  while True:
    try:
      os.makedirs(model_dir, exist_ok=True)
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
      raise TrainingError(
          f"{path}: {model_dir} is in use by process {holder.get('pid')} on "
          f"{holder.get('hostname')}; stop it or delete the lock file if it is dead")
    except OSError as e:  # e.g. a parent that is a file, or no permission
      raise TrainingError(f"{model_dir}: cannot write the model directory ({e.strerror})") from None
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


def _model_arguments(config, manifest):
  return {
      "num_classes": manifest.num_classes, "groups": config.groups, "width": float(config.width),
      "dropout": config.dropout
  }


def _flag_values(config):
  return {
      key: list(value) if isinstance(value, tuple) else value
      for key, value in vars(config).items()
  }


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


def check(config, manifest, model_dir):
  """Refuses to resume a model directory that this run's data or settings do not match.

  Raises:
    TrainingError: if config.json holds another label map or network shape than this run, or, when
      there is a checkpoint to resume from, another value of a setting of `FIXED_ON_RESUME`.
  """
  path = os.path.join(model_dir, CONFIG_NAME)
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
  if tf.train.latest_checkpoint(os.path.join(model_dir, LATEST_SUBDIR)) is not None:
    _check_resume(path, previous.get("flags", {}), _flag_values(config))


def write(config, manifest, model_dir):
  """Writes config.json (model, classes, stats, the flags this run uses) and mean.npy."""
  tf.io.gfile.makedirs(model_dir)
  content = {
      "model": _model_arguments(config, manifest), "classes": manifest.data["classes"],
      "image_size": manifest.image_size, "input_size": input_pipeline.CROP_SIZE,
      "stats": manifest.stats,
      "flags": {**_flag_values(config), "shards": manifest.directory, "model_dir": model_dir}
  }
  _replace(os.path.join(model_dir, CONFIG_NAME),
           (json.dumps(content, indent=1, sort_keys=True) + "\n").encode())
  mean = io.BytesIO()
  np.save(mean, manifest.mean_image())
  _replace(os.path.join(model_dir, MEAN_NAME), mean.getvalue())


def _replace(path, data):
  """Writes `data` to `path` under a temporary name, then renames it over the old file.

  A resumed run rewrites config.json and mean.npy: this way it never leaves them half-written, and
  the old file is replaced, which TensorFlow's ram:// (the tests' stand-in for gs://) would append
  to when opened for writing.
  """
  with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
    f.write(data)
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def read_config(model_dir):
  """Reads `config.json` of a model directory.

  Args:
    model_dir: the trainer's `--model_dir`.

  Returns:
    The config dict, with at least `model` (alexnet's keyword arguments), `classes`
    (`[{label, synset, name}]` in label order) and `image_size` (side of the stored images).

  Raises:
    ValueError: if the file is missing, not JSON, or lacks those keys.
  """
  path = os.path.join(model_dir, CONFIG_NAME)
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{path}: not found; is {model_dir} a trained model directory?")
  try:
    with tf.io.gfile.GFile(path) as f:
      config = json.load(f)
  except json.JSONDecodeError as err:
    raise ValueError(f"{path}: not valid JSON ({err})") from None
  for key in ("model", "classes", "image_size"):
    if key not in config:
      raise ValueError(f"{path}: missing key {key!r}")
  num_classes = config["model"].get("num_classes")
  labels = [entry.get("label") for entry in config["classes"]]
  if labels != list(range(len(labels))) or len(labels) != num_classes:
    raise ValueError(f"{path}: classes must be labels 0..num_classes-1 in order (num_classes "
                     f"{num_classes}, {len(labels)} classes listed)")
  return config


def read_mean(model_dir, image_size):
  """Reads the training set's mean image, `mean.npy`, of a model directory.

  Args:
    model_dir: the trainer's `--model_dir`.
    image_size: expected side of the (square) mean image.

  Returns:
    float32 `[image_size, image_size, 3]` in 0..255 units.

  Raises:
    ValueError: if the file is missing, unreadable, or has another shape.
  """
  return dataset_lib.read_mean_image(os.path.join(model_dir, MEAN_NAME), image_size)
