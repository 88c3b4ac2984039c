"""Runs a tf.data service dispatcher or input worker (train/distributed/service.py says how).

  python -m train.data_service --port=5050                                 # one dispatcher
  python -m train.data_service --dispatcher=HOST:5050 --host=$(hostname)   # on each input host
  python -m train.main ... --data_service=HOST:5050                        # the trainer

Every `--log_seconds` each process logs what it is doing. SIGTERM or Ctrl-C stops it and exits 0.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import socket
import sys

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from train.distributed import service

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines the service's flags (called only when run as a command)."""
  into = {"flag_values": flag_values}
  flags.DEFINE_string(
      "dispatcher", None, "HOST:PORT of the dispatcher: run a worker for it. "
      "Without it, run the dispatcher.", **into)
  flags.DEFINE_integer(
      "port", 0, "Port to listen on (a dispatcher needs one; a worker's 0 "
      "picks a free one).", **into)
  flags.DEFINE_string("host", socket.gethostname(), "The name trainers reach this worker by.",
                      **into)
  flags.DEFINE_float("log_seconds", 1.0, "Seconds between status lines.", **into)
  flags.register_validator("port", lambda port: 0 <= port < 65536, "--port must be in [0, 65535]",
                           **into)
  flags.register_validator("log_seconds", lambda seconds: seconds > 0,
                           "--log_seconds must be above 0", **into)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.port and service.port_in_use(FLAGS.port):
    logging.error("--port=%d is in use (another dispatcher or worker?)", FLAGS.port)
    sys.exit(1)
  try:
    if FLAGS.dispatcher:
      service.run_worker(FLAGS.dispatcher, FLAGS.host, FLAGS.port, FLAGS.log_seconds)
    elif FLAGS.port:
      service.run_dispatcher(FLAGS.port, FLAGS.log_seconds)
    else:
      logging.error("Pass --port=P to run a dispatcher or --dispatcher=HOST:P for a worker")
      sys.exit(1)
  except tf.errors.OpError as e:  # A port in use, an unresolvable dispatcher address.
    logging.error("%s", e.message.splitlines()[0])
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
