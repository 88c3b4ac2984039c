"""Multi-worker training: `TF_CONFIG` checked, datasets compared, preemption, lost peers named.

Every check ends in one `TrainingError` line naming `TF_CONFIG`, the flag or the peer at fault,
never a hang: a port already taken means a second process with the same task index; workers
compare their manifests through TensorFlow's coordination service before the first step; a peer
that dies or freezes is noticed by the coordination service's heartbeats (about 10 s) and named.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import socket
import threading

import tensorflow as tf
from absl import logging
# The coordination service's key-value store has no public API; PreemptionCheckpointHandler
# uses the same calls.
from tensorflow.python.eager import context
from tensorflow.python.util import deprecation

from train.errors import TrainingError

# Errors with which a collective or the coordination service reports a task that stopped answering.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError, tf.errors.InternalError, tf.errors.UnknownError)
_TASK_NAME = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")
# How long a worker waits for its peers' manifests: they are published right after the cluster
# forms, so only a peer that dies in between makes this wait (its heartbeat timeout ends it first).
_DATASET_TIMEOUT_MS = 120_000


@dataclasses.dataclass(frozen=True)
class Task:
  """This process's place in the cluster that `TF_CONFIG` describes.

  Attributes:
    cluster: `{job: ["host:port", ...]}`.
    type: this process's job, e.g. "worker".
    index: this process's index in its job.
  """
  cluster: dict
  type: str
  index: int

  @property
  def address(self):
    return self.cluster[self.type][self.index]

  def name(self, job, index):
    """'worker 1 (host:port)', how the messages name a task."""
    return f"{job} {index} ({self.cluster[job][index]})"

  def peers(self):
    return [(job, i)
            for job, addresses in self.cluster.items()
            for i in range(len(addresses))
            if (job, i) != (self.type, self.index)]


def read_tf_config(environ=os.environ):
  """Parses and checks `TF_CONFIG`.

  Returns:
    The `Task`, or None when `TF_CONFIG` is unset or empty (single-process training).

  Raises:
    TrainingError: naming what is wrong with `TF_CONFIG`.
  """
  text = environ.get("TF_CONFIG", "").strip()
  if not text:
    return None
  try:
    spec = json.loads(text)
  except json.JSONDecodeError as e:
    raise TrainingError(f"TF_CONFIG is not JSON ({e}); see WORKSPACE.md, 'Several GPUs and "
                        "machines'") from None
  cluster = spec.get("cluster") if isinstance(spec, dict) else None
  task = spec.get("task") if isinstance(spec, dict) else None
  if (not isinstance(cluster, dict) or not cluster or not all(
      isinstance(a, list) and a and all(isinstance(x, str) and ":" in x
                                        for x in a)
      for a in cluster.values())):
    raise TrainingError('TF_CONFIG: "cluster" must map each job to a list of "host:port" strings')
  if not isinstance(task, dict) or task.get("type") not in cluster:
    raise TrainingError(f'TF_CONFIG: "task" must name a "type" among {sorted(cluster)}')
  index = task.get("index")
  if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
    raise TrainingError(f'TF_CONFIG: task index {index!r} is not in 0..'
                        f'{len(cluster[task["type"]]) - 1} for the {len(cluster[task["type"]])} '
                        f'{task["type"]} addresses listed')
  return Task(cluster, task["type"], index)


def check_port_free(task):
  """Refuses to start when this task's port is taken: most often the same index started twice.

  Checked before TensorFlow binds the port, whose own failure would come with a traceback.
  TensorFlow's server listens on every interface, so this binds every interface too.

  Raises:
    TrainingError: if the port is in use.
  """
  port = int(task.address.rsplit(":", 1)[1])
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    try:
      probe.bind(("", port))
    except OSError:
      raise TrainingError(
          f"TF_CONFIG: port {port} of {task.name(task.type, task.index)} is in use; is another "
          f"process already running as {task.type} {task.index}? Each worker needs its own "
          "task index") from None


def create_strategy(task=None):
  """`MultiWorkerMirroredStrategy` for a `Task` (it waits until every worker of the cluster is up);
  without one, `MirroredStrategy` over several GPUs (or logical CPUs, as the tests configure), else
  the default strategy.

  Raises:
    TrainingError: if the task's port is taken or its server cannot start.
  """
  if task is None:
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if len(gpus) > 1:
      return tf.distribute.MirroredStrategy()
    if not gpus and len(cpus) > 1:
      return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()
  check_port_free(task)
  logging.info("This is %s of a cluster of %d: waiting for every worker to start",
               task.name(task.type, task.index), sum(map(len, task.cluster.values())))
  try:
    return tf.distribute.MultiWorkerMirroredStrategy()
  except (tf.errors.OpError, RuntimeError) as e:
    message = getattr(e, "message", None) or str(e)
    raise TrainingError(f"TF_CONFIG: {task.name(task.type, task.index)} cannot join the cluster "
                        f"({message.strip().splitlines()[0]})") from None


def is_chief(strategy):
  """Whether this process writes the model directory (always, unless it is a non-chief worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0 and
          "chief" not in resolver.cluster_spec().as_dict())


def log_share(task, strategy, manifest, batch_size):
  """Logs this worker's share: its replicas, its part of the global batch and its training shards.

  The shards are those `input_pipeline.make_dataset` keeps for input pipeline `index` of `count`
  (`Dataset.shard`: every count-th file from the index-th).
  """
  workers = len(task.cluster.get("chief", [])) + len(task.cluster.get("worker", []))
  # Input pipelines are numbered as tf.distribute numbers workers: the chief first.
  index = 0 if task.type == "chief" else task.index + len(task.cluster.get("chief", []))
  names = [os.path.basename(path) for path in manifest.shard_paths("train")[index::workers]]
  logging.info("%s: %d of %d replicas, per-replica batch %d of the global %d; training shards %s",
               task.name(task.type, task.index), len(strategy.extended.worker_devices),
               strategy.num_replicas_in_sync, batch_size // strategy.num_replicas_in_sync,
               batch_size, ", ".join(names))


def weights_fingerprint(model):
  """A short hash of the model's weights: every worker logs it, and all must log the same."""
  digest = hashlib.sha256()
  for weight in model.weights:
    digest.update(weight.numpy().tobytes())
  return digest.hexdigest()[:16]


def dataset_fingerprint(manifest):
  """A short hash of what workers must agree on: the classes and every shard's name and content."""
  content = {"classes": manifest.data["classes"], "splits": manifest.data["splits"]}
  return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def check_same_dataset(task, manifest):
  """Every worker compares its manifest with every other's, so all of them stop on a mismatch.

  Raises:
    TrainingError: naming this worker's --shards and the other worker's.
  """
  fingerprint = dataset_fingerprint(manifest)
  store = context.context()
  store.set_config_key_value(f"alexnet/dataset/{task.type}/{task.index}",
                             f"{fingerprint} {manifest.directory}")
  for job, index in task.peers():
    try:
      theirs, directory = store.get_config_key_value(f"alexnet/dataset/{job}/{index}",
                                                     _DATASET_TIMEOUT_MS).split(" ", 1)
    except _PEER_ERRORS as e:
      raise lost_peer_error(task, e, None) from None
    if theirs != fingerprint:
      raise TrainingError(
          f"--shards={manifest.directory}: its manifest differs from that of {directory}, which "
          f"{task.name(job, index)} reads; every worker must read the same dataset")


@contextlib.contextmanager
def reporting_lost_peers(task, step_fn):
  """Turns the error of a collective whose peer died or froze into one line naming the peer.

  Args:
    task: this process's `Task`, or None (single process: errors pass unchanged).
    step_fn: returns the last step trained, for the message (None: before training).
  """
  try:
    yield
  except _PEER_ERRORS as e:
    if task is None:
      raise
    raise lost_peer_error(task, e, step_fn()) from None


def lost_peer_error(task, error, step):
  """The `TrainingError` for a collective's error: which peer was lost, and what to do."""
  named = {(job, int(index)) for job, index in _TASK_NAME.findall(error.message or "")}
  lost = [peer for peer in task.peers() if peer in named] or task.peers()
  names = ", ".join(task.name(*peer) for peer in lost)
  logging.debug("Collective error: %s", error.message)
  when = "before training" if step is None else f"after step {step}"
  return TrainingError(
      f"lost {names}: it stopped answering (killed, frozen, unreachable, or stopped by an error in "
      f"its own log) {when}; restart every worker with the same command to resume from the last "
      "checkpoint")


def _quiet_watcher_errors(args, default=threading.excepthook):
  """Keeps the handler's watcher thread from printing a traceback when a peer is lost.

  The thread waits on the coordination service, which fails when a peer dies; the main thread's
  next collective fails too and names the peer (`reporting_lost_peers`).
  """
  if args.thread is not None and args.thread.name.startswith("PeerTerminationWatcher") and (
      issubclass(args.exc_type, tf.errors.OpError)):
    logging.debug("Preemption watcher stopped: %s", args.exc_value)
    return
  default(args)


class Preemption:
  """SIGTERM to any worker: every worker saves at the same step, then the loop stops and exits 0.

  `tf.distribute.experimental.PreemptionCheckpointHandler` agrees on the step through the
  coordination service; it installs its own SIGTERM handler (so the trainer's handles only SIGINT
  in a cluster), and its run counter is restored from the checkpoint every worker reads.
  """

  def __init__(self, strategy, checkpoint_manager, save_fn):
    """Starts watching for SIGTERM on this worker and on its peers.

    Args:
      strategy: the `MultiWorkerMirroredStrategy`.
      checkpoint_manager: the `tf.train.CheckpointManager` of the chief's `ckpt/`, which every
        worker restores from.
      save_fn: `save_fn(step)` saves (collectively) the checkpoint of `step`.
    """
    self.requested = None
    config = tf.distribute.experimental.TerminationConfig(exit_fn=self._stop, save_fn=save_fn)
    self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, checkpoint_manager, termination_config=config)
    threading.excepthook = _quiet_watcher_errors

  def _stop(self):
    self.requested = "SIGTERM"
    logging.warning("SIGTERM on a worker: every worker saved this step; stopping")

  def after_step(self, step):
    """Saves and sets `requested` if a worker was preempted; call once per step, on every worker."""
    # The handler reads its own deprecated run counter, which would log a warning per save.
    with deprecation.silence():
      self.handler.save_checkpoint_if_preempted(step)
