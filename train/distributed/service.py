"""A tf.data service dispatcher and input workers, to decode training images on other hosts.

  python -m train.data_service --port=5050                                 # one dispatcher
  python -m train.data_service --dispatcher=HOST:5050 --host=$(hostname)   # on each input host
  python -m train.main ... --data_service=HOST:5050                        # the trainer

The trainer sends the CPU part of its training pipeline (`train.input_pipeline.make_dataset`:
shard listing, shuffles, parse, JPEG decode of the crop, batch) to the dispatcher; the workers run
it, reading the shards themselves under the same paths, and stream uint8 batches to the trainer.
Files are handed out dynamically ("distributed_epoch"), so two workers never read the same shard
at the same time. That sharding is at-most-once: a worker that dies loses the records it had read
and not yet sent, which training tolerates and evaluation does not, so evaluation stays local.

Every `--log_seconds` each process logs what it is doing: the dispatcher its workers, a worker its
tasks (a trainer's job on it) and the CPU cores it kept busy since the last line. TensorFlow counts
the elements a worker serves only in C++ metrics that Python cannot read, so the trainer's
Images/s is the element rate. SIGTERM or Ctrl-C stops the server and exits 0.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import resource
import signal
import socket
import sys
import threading
import time

import tensorflow as tf
from absl import logging

# Raw uint8 crops: snappy saved too little on photographs to pay for its CPU on both ends
# (benchmarks/bench_data_service.py), and decompressing on the trainer takes the trainer's cores.
COMPRESSION = None
# A dispatcher drops a silent worker after this long; its unsent files are then lost to this pass.
WORKER_TIMEOUT_MS = 5_000
# TensorFlow 2.21's servers listen on every interface (gRPC on "0.0.0.0:port", no credentials);
# neither DispatcherConfig nor WorkerConfig has a field for the address to bind, so no flag of ours
# can limit them to one: the network must (WORKSPACE.md, "Trusted networks only").
UNGUARDED = ("listening on every network interface, without authentication: anyone who can reach "
             "port %s can have the workers run any dataset graph, and TensorFlow ops read files; "
             "run the service only on a trusted network, or firewall the port to the trainer "
             "and the input hosts")


def check_address(address):
  """Returns an error line if nothing listens at `address` ("HOST:PORT"), else None.

  The service's client retries an unreachable dispatcher forever; the trainer checks first so
  that a wrong --data_service is one line, not a hang.
  """
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    return f"--data_service={address}: expected HOST:PORT"
  try:
    socket.create_connection((host, int(port)), timeout=5).close()
  except OSError as e:
    return f"--data_service={address}: no dispatcher answers ({e.strerror or e})"
  return None


def distribute(dataset, address):
  """Makes `dataset` run on the service's workers; iterating it reads from them."""
  return dataset.apply(
      tf.data.experimental.service.distribute(
          processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=address,
          compression=COMPRESSION))


def _cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _serve(describe, log_seconds):
  """Logs `describe()` every `log_seconds` until SIGTERM or SIGINT, then exits 0."""
  stop = threading.Event()
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda signum, frame: stop.set())
  while not stop.wait(log_seconds):
    logging.info("%s", describe())
  logging.info("Stopping: %s", describe())
  # Exit without the servers' stop: a worker's stop can block forever, holding the GIL, while a
  # trainer still waits on it for a dispatcher that is gone. Neither server keeps state worth a
  # stop: the dispatcher forgets a vanished worker, and a trainer reads from the others.
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(0)


def port_in_use(port):
  """Whether `port` is taken. gRPC binds with SO_REUSEPORT, so a second dispatcher on the same
  port would start and silently share the clients; a plain bind still fails."""
  with socket.socket() as probe:
    try:
      probe.bind(("", port))
    except OSError:
      return True
  return False


def run_dispatcher(port, log_seconds):
  server = tf.data.experimental.service.DispatchServer(
      tf.data.experimental.service.DispatcherConfig(port=port, worker_timeout_ms=WORKER_TIMEOUT_MS))
  logging.info("Dispatcher listening on port %d", port)
  logging.warning(UNGUARDED, port)
  _serve(
      lambda: f"dispatcher :{port}: {server._num_workers()} workers",  # pylint: disable=protected-access
      log_seconds)


def run_worker(dispatcher, host, port, log_seconds):
  server = tf.data.experimental.service.WorkerServer(
      tf.data.experimental.service.WorkerConfig(dispatcher_address=dispatcher,
                                                worker_address=f"{host}:%port%", port=port))
  port = server._address.rpartition(":")[2]  # pylint: disable=protected-access  (the bound port)
  logging.info("Worker %s:%s serving the dispatcher %s", host, port, dispatcher)
  logging.warning(UNGUARDED, port)
  last = [time.monotonic(), _cpu_seconds()]

  def describe():
    now, cpu = time.monotonic(), _cpu_seconds()
    cores = (cpu - last[1]) / max(now - last[0], 1e-9)
    last[:] = [now, cpu]
    return (f"worker {host}:{port}: {server._num_tasks()} tasks, "  # pylint: disable=protected-access
            f"{cores:.2f} cores busy")

  _serve(describe, log_seconds)
