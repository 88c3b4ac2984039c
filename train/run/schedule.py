"""The learning-rate schedules, plateau and step, the warm-up, and the training state they keep.

The rate lives in a variable of the checkpointed state, read by the optimizer at every step, so a
resumed run continues at the rate it stopped at. Time at chance (train/run/chance.py) does not count:
while the network still predicts at chance the plateau rule's patience does not run, and the step
schedule's epochs are counted from the epochs that ended above chance, so a slow start delays the
drops instead of making the flat phase permanent. A run that leaves chance within its first epoch
(the usual case) follows the paper's schedule exactly.
"""

import math

import tensorflow as tf
from absl import logging


def create_state(config):
  """The training state checkpointed beside the model: step, epoch, schedule, random generator."""
  rng = (tf.random.Generator.from_seed(config.seed)
         if config.seed is not None else tf.random.Generator.from_non_deterministic_state())
  return {
      "step": tf.Variable(0, dtype=tf.int64, trainable=False),
      "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
      "learning_rate": tf.Variable(config.learning_rate, dtype=tf.float32, trainable=False),
      "best_val_error": tf.Variable(math.inf, dtype=tf.float64, trainable=False),
      "evals_since_best": tf.Variable(0, dtype=tf.int64, trainable=False),
      "lr_drops": tf.Variable(0, dtype=tf.int64, trainable=False),
      # The step since which the network predicts at chance, -1 when it does not.
      "chance_since": tf.Variable(-1, dtype=tf.int64, trainable=False),
      # The loss sum and examples of the at-chance check's current window.
      "chance_partial": tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False),
      "epochs_at_chance": tf.Variable(0, dtype=tf.int64, trainable=False),
      # The step at which a layer was found silent (train/run/liveness.py), -1 while alive.
      "dead_at": tf.Variable(-1, dtype=tf.int64, trainable=False),
      "rng": rng
  }


def warmup_factor(config, iterations):
  """The warm-up's share of the rate for the step after `iterations` steps: a linear rise from
  1/warmup_steps to 1 over the first `warmup_steps` steps (Goyal et al. 2017), then 1."""
  if not config.warmup_steps:
    return 1.0
  done = tf.cast(iterations, tf.float32) + 1.0
  return tf.minimum(1.0, done / float(config.warmup_steps))


def rate_at(config, state, step):
  """The rate step `step` (1-based) trained at: the schedule's rate times the warm-up's share."""
  return float(state["learning_rate"].numpy()) * float(warmup_factor(config, step - 1))


def update_on_validation(config, state, val_error, at_chance=False):
  """Records a validation error; on a plateau (`patience` evaluations) divides the rate by 10.

  An evaluation while the network predicts at chance does not count towards the patience.

  Returns:
    Whether `val_error` is the best so far.
  """
  if val_error < float(state["best_val_error"].numpy()):
    state["best_val_error"].assign(val_error)
    state["evals_since_best"].assign(0)
    return True
  if at_chance:
    if config.lr_schedule == "plateau":
      logging.info("Validation error has not improved, but the network still predicts at "
                   "chance: the plateau rule waits")
    return False
  state["evals_since_best"].assign_add(1)
  if (config.lr_schedule == "plateau" and state["evals_since_best"].numpy() >= config.patience and
      state["lr_drops"].numpy() < config.max_lr_drops):
    state["learning_rate"].assign(state["learning_rate"] * 0.1)
    state["lr_drops"].assign_add(1)
    state["evals_since_best"].assign(0)
    logging.info("Validation error has not improved for %d evaluations: learning rate now %.3g",
                 config.patience, float(state["learning_rate"].numpy()))
  return False


def end_epoch(config, state, epoch, at_chance):
  """At the end of epoch `epoch` (1-based): counts it if it ended at chance; applies the step
  schedule to the epochs that did not."""
  if at_chance:
    state["epochs_at_chance"].assign_add(1)
  if config.lr_schedule == "step":
    counted = epoch - int(state["epochs_at_chance"].numpy())
    if at_chance and any(epoch >= boundary > counted for boundary in config.lr_step_epochs):
      logging.info(
          "Epoch %d: the network still predicts at chance; the step schedule counts "
          "%d epochs and waits", epoch, counted)
    state["learning_rate"].assign(step_schedule_rate(config, counted))


def step_schedule_rate(config, epoch):
  """The step schedule: the base rate divided by 10 at each of `lr_step_epochs` already reached."""
  return config.learning_rate * 0.1**sum(epoch >= boundary for boundary in config.lr_step_epochs)
