"""How long the paper's initialisation stays at chance, against Caffe's biases and a warm-up.

  .venv/bin/python -m benchmarks.bench_flat_start [--classes=100] [--width=0.25] [--steps=300]

A synthetic problem that a network can learn and that starts at chance exactly as ImageNet does:
each class is a smooth random colour pattern (an 8x8 random field, enlarged to 227x227) under
per-image noise, and `train.run.train.train_step` trains on it with the paper's optimiser (SGD, momentum
0.9, weight decay 0.0005, dropout 0.5, the lighting noise) at each setting. The images are made in
NumPy per step, so the figures are the network's, not a JPEG decoder's. For each setting it
reports the first step at which the mean training loss of a window of steps (`train.run.chance`'s
aligned windows) falls below the band around ln(classes) that `train.run.chance` calls "at chance"
(the network learns), and how far the windows' means went below and above ln(classes) before
(the band must hold the first).
Run by hand, never in the tests; a narrowed network (--width) is what a shared 2-core machine
allows, and narrowing is known to lengthen the flat phase, so compare settings, not absolute steps.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import math
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from train import config as config_lib
from train import input_pipeline
from train import model as model_lib
from train import preparation
from train.run import chance
from train.run import schedule
from train.run import train

FLAGS = flags.FLAGS
SETTINGS = {
    "paper": {}, "caffe_biases": {"bias_init": "caffe"}, "warmup": {"warmup_steps": 100},
    "caffe_biases_warmup": {"bias_init": "caffe", "warmup_steps": 100}
}


def class_patterns(num_classes, amplitude, rng):
  """One smooth colour pattern per class, in grey levels around 0: an 8x8x3 field, enlarged."""
  fields = rng.normal(0, amplitude, (num_classes, 8, 8, 3)).astype(np.float32)
  size = input_pipeline.CROP_SIZE
  return tf.image.resize(fields, [size, size], method="bilinear").numpy()


def make_batch(patterns, batch_size, noise, rng):
  labels = rng.integers(0, len(patterns), batch_size)
  pixels = 128 + patterns[labels] + rng.normal(0, noise, patterns.shape[1:]).astype(np.float32)
  return {
      "image": tf.constant(np.clip(pixels, 0, 255).astype(np.uint8)),
      "label": tf.constant(labels, tf.int32), "offset": tf.zeros([batch_size, 2], tf.int32),
      "flipped": tf.constant(rng.random(batch_size) < 0.5)
  }


def run_setting(name, overrides, patterns, prep):
  """Trains one setting; returns (the step at which the running mean falls below the band, or None;
  its largest relative distance below and above ln(C) until then; its last value; seconds)."""
  config = config_lib.Config(batch_size=FLAGS.batch_size, width=FLAGS.width, seed=FLAGS.seed,
                             **overrides)
  keras.utils.set_random_seed(FLAGS.seed)
  model = model_lib.alexnet(len(patterns), config.groups, config.dropout, config.width,
                            config.bias_init)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  step_fn = tf.function(
      lambda batch: train.train_step(model, optimizer, batch, prep, config, state["rng"]))
  rng = np.random.default_rng(FLAGS.seed)
  expected = math.log(len(patterns))
  watch = chance.ChanceWatch(len(patterns), FLAGS.window, FLAGS.batch_size)
  left, below, above, start = None, 0.0, 0.0, time.perf_counter()
  for step in range(1, FLAGS.steps + 1):
    stats = step_fn(make_batch(patterns, FLAGS.batch_size, FLAGS.noise, rng)).numpy()
    watch.fold(step, float(stats[0]), float(stats[3]))
    if step % FLAGS.window:
      continue
    logging.info("%s: steps %d-%d, mean loss %.4f", name, step - FLAGS.window + 1, step, watch.mean)
    if watch.mean < expected * (1 - chance.BAND_BELOW):
      left = step
      break
    below = max(below, (expected - watch.mean) / expected)
    above = max(above, (watch.mean - expected) / expected)
  return left, below, above, watch.mean, time.perf_counter() - start


def main(argv):
  del argv
  rng = np.random.default_rng(FLAGS.seed)
  patterns = class_patterns(FLAGS.classes, FLAGS.amplitude, rng)
  size = input_pipeline.CROP_SIZE
  prep = preparation.Preparation(tf.fill([size, size, 3], 128.0),
                                 tf.constant([0.2, 0.02, 0.005]) * 255**2, tf.eye(3))
  logging.info(
      "%d classes, width %g, batch %d, window %d steps, band %.1f%% below / %.1f%% above "
      "ln(%d)=%.4f, at most %d steps, seed %d", FLAGS.classes, FLAGS.width, FLAGS.batch_size,
      FLAGS.window, 100 * chance.BAND_BELOW, 100 * chance.BAND_ABOVE, FLAGS.classes,
      math.log(FLAGS.classes), FLAGS.steps, FLAGS.seed)
  for name in FLAGS.settings:
    left, below, above, last, seconds = run_setting(name, SETTINGS[name], patterns, prep)
    verdict = (f"fell below the band in the window ending at step {left}"
               if left is not None else f"still at chance after {FLAGS.steps} steps")
    logging.info(
        "%-20s %s (mean %.4f); before, the windows' means went up to %.2f%% below and "
        "%.2f%% above ln(C); %.0f s", name, verdict, last, 100 * below, 100 * above, seconds)


def define_flags():
  flags.DEFINE_integer("classes", 100, "Classes of the synthetic problem.", lower_bound=2)
  flags.DEFINE_float("width", 0.5, "Channel multiplier of the network.", lower_bound=0)
  flags.DEFINE_integer("batch_size", 32, "Images per step.", lower_bound=1)
  flags.DEFINE_integer("steps", 300, "Most steps per setting.", lower_bound=1)
  flags.DEFINE_integer("window", chance.WINDOW_STEPS // 4, "Steps of each window's mean.",
                       lower_bound=1)
  flags.DEFINE_float("amplitude", 40.0, "Grey levels of the class patterns (std).", lower_bound=0)
  flags.DEFINE_float("noise", 30.0, "Grey levels of the per-image noise (std).", lower_bound=0)
  flags.DEFINE_integer("seed", 0, "Seed of the data and the network.", lower_bound=0)
  flags.DEFINE_list("settings", list(SETTINGS), f"Settings to compare, of {list(SETTINGS)}.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
