"""Images/s of the training step at --steps_per_loop 1, 10 and 100, where dispatch dominates.

  python -m benchmarks.bench_steps_per_loop [--width 0.0625] [--batch_size 2] [--seconds 5] [--rounds 3]

A narrow network and small batches on the CPU make each step short, so the cost of calling a
`tf.function` from Python once per step shows, as it does for the paper's network on a fast
accelerator. The batches come from memory (one batch, repeated), so the input pipeline does not
count. The loop is the trainer's own (`train.run.loop.make_train_loop` around
`train.run.train.train_step`).
"""

from common import dataset as dataset_lib
from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import tempfile
import time

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from benchmarks.bench_input_pipeline import write_synthetic_dataset
from train import config as config_lib
from train import input_pipeline
from train import model as model_lib
from train import preparation
from train.run import loop as loop_lib
from train.run import schedule
from train.run import train

FLAGS = flags.FLAGS


def one_batch_trainer(width, batch_size):
  """The trainer's parts for the paper's optimiser on one in-memory batch, repeated: `(manifest,
  iterator, step)`, `step(batch, measure)` being `train.run.train.train_step` as the trainer calls
  it."""
  with tempfile.TemporaryDirectory() as scratch:
    manifest = dataset_lib.load(write_synthetic_dataset(scratch, 4 * batch_size))
    batch = next(
        iter(
            input_pipeline.make_dataset(
                manifest,
                input_pipeline.Stream("train", batch_size=batch_size, training=True,
                                      shuffle_buffer=16))))
    prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
  config = config_lib.Config(batch_size=batch_size, width=width)
  strategy = tf.distribute.get_strategy()
  model = model_lib.alexnet(manifest.num_classes, config.groups, config.dropout, config.width)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  iterator = iter(
      strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat()))
  return manifest, iterator, lambda b, measure: train.train_step(model, optimizer, b, prep, config,
                                                                 state["rng"], measure)


def main(argv):
  del argv
  strategy = tf.distribute.get_strategy()
  manifest, iterator, step = one_batch_trainer(FLAGS.width, FLAGS.batch_size)
  train_loop = loop_lib.make_train_loop(strategy, step)
  lengths = [int(steps_per_loop) for steps_per_loop in FLAGS.steps_per_loop]
  seconds_per_step = {steps_per_loop: float("inf") for steps_per_loop in lengths}
  # Alternating rounds, keeping each length's best: on a shared machine, load comes and goes.
  for _ in range(FLAGS.rounds):
    for steps_per_loop in lengths:
      loop_lib.run_loop(train_loop, iterator, steps_per_loop, manifest)[0].numpy()  # Warm-up.
      steps, start = 0, time.perf_counter()
      while time.perf_counter() - start < FLAGS.seconds:
        loop_lib.run_loop(train_loop, iterator, steps_per_loop, manifest)[0].numpy()
        steps += steps_per_loop
      seconds_per_step[steps_per_loop] = min(seconds_per_step[steps_per_loop],
                                             (time.perf_counter() - start) / steps)
  logging.info("CPU cores: %d, shared with other processes; width %g, batch %d", os.cpu_count(),
               FLAGS.width, FLAGS.batch_size)
  first = next(iter(seconds_per_step))
  for steps_per_loop, seconds in seconds_per_step.items():
    logging.info("--steps_per_loop=%-4d %8.1f images/s, %7.2f ms/step, %+.2f ms/step against %d",
                 steps_per_loop, FLAGS.batch_size / seconds, 1e3 * seconds,
                 1e3 * (seconds - seconds_per_step[first]), first)


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_float("width", 0.0625, "Channel multiplier of the network.", lower_bound=0)
  flags.DEFINE_integer("batch_size", 2, "Images per step.", lower_bound=1)
  flags.DEFINE_list("steps_per_loop", ["1", "10", "100"], "Loop lengths to compare.")
  flags.DEFINE_float("seconds", 5.0, "Seconds per measurement, after a warm-up.", lower_bound=0)
  flags.DEFINE_integer("rounds", 3, "Measurements of each length; the best counts.", lower_bound=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
