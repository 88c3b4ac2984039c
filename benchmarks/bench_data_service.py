"""Images/s of the training input pipeline, local and through the tf.data service, and its wire cost.

  python -m benchmarks.bench_data_service [--shards DIR] [--seconds 15]

Starts a dispatcher and up to two workers as `python -m train.data_service` processes on
127.0.0.1 and reads the trainer's training pipeline (no model) (a) locally, (b) through one worker,
(c) through two, each through the service without compression and with its snappy compression
("AUTO"). Bytes per image are the loopback interface's transmitted bytes (/proc/net/dev) over the
images read: they include gRPC framing, and any other loopback traffic on a shared machine. CPU per
image is the workers' user+system time (/proc/PID/stat) over the images; it sizes the worker cores
an accelerator needs. On one small machine the workers and the reader share the cores: expect
overhead, not speedup.
"""

from common import dataset as dataset_lib
from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import socket
import subprocess
import sys
import tempfile
import time

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from benchmarks.bench_input_pipeline import write_synthetic_dataset
from train import input_pipeline

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _loopback_bytes():
  with open("/proc/net/dev") as f:
    line = next(line for line in f if line.strip().startswith("lo:"))
  return int(line.split(":")[1].split()[8])


def _cpu_seconds(pids):
  total = 0
  for pid in pids:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
  return total


def measure(dataset, seconds, worker_pids=()):
  """Reads batches for `seconds` after a warm-up: (images/s, wire bytes/image, worker CPU s/image)."""
  iterator = iter(dataset)
  for _ in range(3):
    next(iterator)
  images, sent, cpu, start = 0, _loopback_bytes(), _cpu_seconds(worker_pids), time.perf_counter()
  while time.perf_counter() - start < seconds:
    images += int(tf.size(next(iterator)["label"]))
  elapsed = time.perf_counter() - start
  return (images / elapsed, (_loopback_bytes() - sent) / images,
          (_cpu_seconds(worker_pids) - cpu) / images)


def _start(*args):
  return subprocess.Popen([sys.executable, "-m", "train.data_service", *args], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv):
  del argv
  started = []
  try:
    with tempfile.TemporaryDirectory() as scratch:
      shards = FLAGS.shards or write_synthetic_dataset(scratch, FLAGS.num_images)
      manifest = dataset_lib.load(shards)
      pipeline = input_pipeline.make_dataset(
          manifest,
          input_pipeline.Stream("train", batch_size=FLAGS.batch_size, training=True,
                                shuffle_buffer=1000))
      local = measure(pipeline, FLAGS.seconds)
      with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
      address = f"127.0.0.1:{port}"
      started.append(_start(f"--port={port}"))
      results = {}
      for workers in (1, 2):
        started.append(_start(f"--dispatcher={address}", "--host=127.0.0.1"))
        time.sleep(FLAGS.start_seconds)  # The worker's TensorFlow import and registration.
        for compression in (None, "AUTO"):
          served = pipeline.apply(
              tf.data.experimental.service.distribute("distributed_epoch", address,
                                                      compression=compression))
          results[workers, compression] = measure(served, FLAGS.seconds,
                                                  [p.pid for p in started[1:]])
  finally:
    for process in started:
      process.terminate()
      process.wait()
  logging.info("CPU cores: %d, shared with other processes; batch %d", os.cpu_count(),
               FLAGS.batch_size)
  logging.info("(a) local pipeline:             %7.1f images/s", local[0])
  for (workers, compression), (rate, wire, cpu) in results.items():
    logging.info(
        "(%s) %d worker(s), compression %-4s: %7.1f images/s, overhead %6.0f us/image, "
        "%7.0f wire bytes/image, worker CPU %6.0f us/image", "b" if workers == 1 else "c", workers,
        compression or "none", rate, 1e6 * (1 / rate - 1 / local[0]), wire, 1e6 * cpu)
  cpu = results[2, None][2]
  logging.info(
      "A trainer at %.0f images/s needs about %.0f worker cores (at %.0f us of worker CPU "
      "per image, uncompressed)", FLAGS.target_images_per_sec, FLAGS.target_images_per_sec * cpu,
      1e6 * cpu)


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_string("shards", None, "A dataset directory; default: write a synthetic one.")
  flags.DEFINE_integer("num_images", 2000, "Images in the synthetic dataset.", lower_bound=1)
  flags.DEFINE_integer("batch_size", 128, "Images per batch (per element of the service).",
                       lower_bound=1)
  flags.DEFINE_float("seconds", 15.0, "Seconds per measurement, after a warm-up.", lower_bound=0)
  flags.DEFINE_float("start_seconds", 20.0, "Seconds to wait for a worker to start.", lower_bound=0)
  flags.DEFINE_float("target_images_per_sec", 20_000.0,
                     "An accelerator's training rate, to size the worker cores it needs.",
                     lower_bound=0)


if __name__ == "__main__":
  define_flags()
  app.run(main)
