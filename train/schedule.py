"""The learning-rate schedules, plateau and step, and the training state they keep.

The rate lives in a variable of the checkpointed state, read by the optimizer at every step, so a
resumed run continues at the rate it stopped at.
"""

import math

import tensorflow as tf
from absl import logging


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


def update_on_validation(config, state, val_error):
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


def step_schedule_rate(config, epoch):
  """The step schedule: the base rate divided by 10 at each of `lr_step_epochs` already reached."""
  return config.learning_rate * 0.1 ** sum(epoch >= boundary for boundary in config.lr_step_epochs)
