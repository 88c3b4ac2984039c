"""What the dead-network check costs a training step: the trainer's loop with and without it.

  python -m benchmarks.bench_liveness [--width 1.0] [--batch_size 128] [--steps_per_loop 10]

Times `train.run.loop.make_train_loop` around `train.run.train.train_step` on one in-memory batch
(the input pipeline does not count), alternating two loops: the trainer's, whose last step measures
which ReLU units fired (train/run/liveness.py), and the same loop with that step measuring nothing.
Prints the cost per loop and per step as a share of the step time. Run by hand; not in the tests.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import time

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from benchmarks import bench_steps_per_loop
from train.run import loop as loop_lib

FLAGS = flags.FLAGS


def main(argv):
  del argv
  strategy = tf.distribute.get_strategy()
  manifest, iterator, train_step = bench_steps_per_loop.one_batch_trainer(
      FLAGS.width, FLAGS.batch_size)

  def step(b, measure, really):
    if measure and not really:  # The same loop, its last step measuring nothing.
      return train_step(b, False), tf.zeros([1])
    return train_step(b, measure)

  loops = {
      name:
          loop_lib.make_train_loop(strategy,
                                   lambda b, measure, really=really: step(b, measure, really))
      for name, really in (("with the check", True), ("without", False))
  }
  seconds = {name: [] for name in loops}
  for name, loop in loops.items():  # Warm-up: tracing.
    loop_lib.run_loop(loop, iterator, FLAGS.steps_per_loop, manifest)[0].numpy()
  for _ in range(FLAGS.rounds):  # Alternating: on a shared machine, load comes and goes.
    for name, loop in loops.items():
      start = time.perf_counter()
      loop_lib.run_loop(loop, iterator, FLAGS.steps_per_loop, manifest)[0].numpy()
      seconds[name].append(time.perf_counter() - start)
  best = {name: sorted(times)[len(times) // 2] for name, times in seconds.items()}
  cost = best["with the check"] - best["without"]
  logging.info("%d CPU cores; width %g, batch %d, %d steps per loop, median of %d loops each",
               os.cpu_count(), FLAGS.width, FLAGS.batch_size, FLAGS.steps_per_loop, FLAGS.rounds)
  for name, value in best.items():
    logging.info("%-15s %8.3f s per loop, %7.1f images/s", name, value,
                 FLAGS.batch_size * FLAGS.steps_per_loop / value)
  logging.info("The check costs %+.1f ms per loop: %+.2f%% of the step time", 1e3 * cost,
               100 * cost / best["without"])


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_float("width", 1.0, "Channel multiplier of the network.", lower_bound=0)
  flags.DEFINE_integer("batch_size", 128, "Images per step.", lower_bound=1)
  flags.DEFINE_integer("steps_per_loop", 10, "Steps per loop (the trainer's default).",
                       lower_bound=1)
  flags.DEFINE_integer("rounds", 5, "Loops timed of each kind.", lower_bound=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
