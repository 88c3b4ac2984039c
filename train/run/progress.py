"""What the trainer reports and how it stops: log lines, scalars, NaN checks, signals, last line.

Statistics stay on the device between log lines (no synchronisation per step); every log line
and every save first checks that no loss since the last check, and no weight, is NaN or infinite.
The end of each of `chance.ChanceWatch`'s windows and every save fold the statistics into it; it
warns while the network still predicts at chance. At the end of every loop, `death` reads which
units fired (train/run/liveness.py) and names a dead network.
"""

import contextlib
import datetime
import math
import signal
import threading
import time

import numpy as np
import tensorflow as tf
from absl import logging

from train.errors import NonFiniteError
from train.model_dir import checkpoints as checkpoints_lib
from train.run import chance as chance_lib
from train.run import liveness


class Progress:
  """Accumulates step statistics (sum of loss, top-1 hits, top-5 hits, examples) for the logs."""

  def __init__(self, config, steps_per_epoch, total_steps, start_step, writers, model, num_classes,
               chance_since=None, chance_partial=(0.0, 0.0)):
    self.config, self.writers, self.model = config, writers, model
    self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
    self.num_classes = num_classes
    self.start_step = self.last_check = self.last_log = self.last_fold = start_step
    self.fresh_start = start_step == 0
    self.window = self.epoch = self.unfolded = tf.zeros([4])
    # The last loop's `liveness.alive_units`, on the device until read; what it said when last read.
    self.alive, self.silent, self.last_alive_step, self.silent_checks = None, None, None, 0
    self.silent_since = None
    self.unit_counts = liveness.unit_counts(model)
    self.loss_history = []  # (first step, last step, mean loss) of each log line, for the death.
    self.last_log_time = time.monotonic()
    self.chance = chance_lib.ChanceWatch(num_classes, chance_lib.window_steps(steps_per_epoch),
                                         config.batch_size, since=chance_since,
                                         partial=chance_partial)

  def add(self, first_step, stats, alive=None):
    """Adds the summed statistics of a loop from `first_step`, and its last step's units that
    fired (on device: no synchronisation).

    A loop never crosses an epoch's end (`train.run.loop.Boundaries.loop_length`), so it belongs to one epoch.
    """
    if (first_step - 1) % self.steps_per_epoch == 0:
      self.epoch = tf.zeros([4])
    self.window += stats
    self.epoch += stats
    self.unfolded += stats
    self.alive = alive

  def death(self, step):
    """Reads the last loop's units that fired (at every loop's end: the loop has returned, so this
    waits for nothing). Returns None while the network is alive, else the error line that says it
    is dead (`liveness.describe_death`): a layer silent at `liveness.CONFIRMATIONS` loop ends in a
    row, so that momentum left over from before the death has had its chance to revive it."""
    if self.alive is None:
      return None
    self.silent = liveness.silent_fractions(self.alive.numpy(), self.unit_counts)
    window = self.window.numpy()
    at_chance = bool(window[3]) and chance_lib.in_band(window[0] / window[3], self.num_classes)
    layer = liveness.dead_layer(self.silent, at_chance)
    self.silent_checks = self.silent_checks + 1 if layer else 0
    if layer is None:
      self.last_alive_step = step
    elif self.silent_checks == 1:
      self.silent_since = step
    if self.silent_checks < liveness.CONFIRMATIONS:
      return None
    history = list(self.loss_history)
    if step > self.last_log and window[3]:
      history.append((self.last_log + 1, step, float(window[0] / window[3])))
    return liveness.describe_death(step, layer, self.silent[layer], self.silent_since,
                                   self.last_alive_step, history)

  def fold(self, step):
    """Folds the steps since the last fold into `self.chance` (a synchronisation: at its windows'
    ends and saves only); returns whether the network still predicts at chance."""
    if step > self.last_fold:
      stats = self.unfolded.numpy()
      self.chance.fold(step, float(stats[0]), float(stats[3]))
      self.unfolded, self.last_fold = tf.zeros([4]), step
    return self.chance.at_chance

  def check_finite(self, step):
    """Raises NonFiniteError if a loss since the last check or a weight is NaN or infinite."""
    steps = f"{self.last_check + 1}..{step}"
    if not np.all(np.isfinite(self.epoch.numpy())):
      raise NonFiniteError(f"non-finite loss at a step in {steps}; stopping without saving")
    # A NaN can reach the weights through the gradient while the loss stays finite (max pooling
    # drops NaNs in the forward pass), so the weights are checked too.
    if not checkpoints_lib.all_finite(self.model.weights):
      raise NonFiniteError(f"non-finite weights after a step in {steps}; stopping without saving")
    self.last_check = step

  def log(self, step, learning_rate):
    """Logs the line of the original trainer and writes the train scalars."""
    self.check_finite(step)
    window, epoch = self.window.numpy(), self.epoch.numpy()
    now = time.monotonic()
    steps = step - self.last_log
    images_per_sec = window[3] / max(now - self.last_log_time, 1e-9)
    loss, top1, top5 = window[:3] / window[3]
    if self.fresh_start and step == self.start_step + 1:
      check_first_loss(loss, self.num_classes)
    eta = (self.total_steps - step) * (now - self.last_log_time) / max(steps, 1)
    self.loss_history.append((self.last_log + 1, step, float(loss)))
    silent = self.silent or {}
    most_silent = max(silent, key=silent.get, default=None)
    logging.info(
        "Time: %s Epoch: %d Batch: %d/%d Loss: %.4f Avg loss: %.4f Accuracy: %.4f "
        "Avg Accuracy: %.4f Top 5 Accuracy: %.4f LR: %.3g Images/s: %.1f ETA: %s%s",
        datetime.datetime.now().strftime("%H:%M:%S"), (step - 1) // self.steps_per_epoch + 1,
        (step - 1) % self.steps_per_epoch + 1, self.steps_per_epoch, loss, epoch[0] / epoch[3],
        top1, epoch[1] / epoch[3], top5, learning_rate, images_per_sec,
        datetime.timedelta(seconds=round(eta)),
        f" Silent: {most_silent} {silent[most_silent]:.1%}" if most_silent else "")
    self.writers.scalars(
        "train", step, {
            "train/loss": loss, "train/top1": top1, "train/top5": top5,
            "train/learning_rate": learning_rate, "perf/images_per_sec": images_per_sec,
            **{f"train/silent_units/{layer}": fraction for layer, fraction in silent.items()}
        })
    self.window, self.last_log, self.last_log_time = tf.zeros([4]), step, now


def check_first_loss(loss, num_classes):
  """Warns when the first loss is far from ln(num_classes), what a freshly initialised net gives.

  Returns:
    Whether the loss is within a factor of two of ln(num_classes).
  """
  expected = math.log(num_classes)
  if 0.5 * expected <= loss <= 2 * expected:
    return True
  logging.warning(
      "First loss %.6g, expected about ln(%d)=%.2f: check the weight init std, an "
      "activation on the logits, and the input scaling (mean subtraction)", loss, num_classes,
      expected)
  return False


def log_closing(reason, step, steps_per_epoch, validation, checkpoints, note=""):
  """Logs the run's last line: why it stopped, where, its last validation and where it saved.

  Args:
    reason: why the loop ended, e.g. "reached --epochs=90" or "SIGINT".
    step: the last step trained.
    steps_per_epoch: steps in one epoch.
    validation: the last validation metrics of this run (with its `step`), or None.
    checkpoints: the run's `checkpoints.Checkpoints`.
    note: appended to the line (`ChanceWatch.closing_note`: still at chance).
  """
  if validation is None:
    figures = "no validation in this run"
  else:
    figures = (f"last validation at step {validation['step']}: top-1 error "
               f"{1 - validation['top1']:.4f}, top-5 error {1 - validation['top5']:.4f}, loss "
               f"{validation['loss']:.4f} on {validation['count']} images")
  logging.info(
      "Stopped (%s) at step %d (epoch %d, batch %d/%d); %s; checkpoint %s; best model "
      "%s%s", reason, step, (step - 1) // steps_per_epoch + 1, (step - 1) % steps_per_epoch + 1,
      steps_per_epoch, figures, *checkpoints.paths(), note)


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
