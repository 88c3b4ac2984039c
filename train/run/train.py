"""Training AlexNet as in Krizhevsky, Sutskever and Hinton (2012), section 5, with tf.distribute.

Distribution: one process per machine. With several visible GPUs (or logical CPUs, as the tests
configure) the trainer uses `MirroredStrategy`; with `TF_CONFIG` set it uses
`MultiWorkerMirroredStrategy`: every machine runs the same command with the same `--model_dir` on
storage all can reach, `TF_CONFIG` naming the cluster and the machine's index; worker 0 (the chief)
writes config, summaries and the real checkpoints, the others save into a temporary directory of
their own (saving is a collective operation every worker must join) and restore from the chief's.
`train/distributed/cluster.py` chooses the strategy, checks the cluster, handles SIGTERM on any worker and
names a lost peer.

Restarting the same command resumes from `model_dir/ckpt` at the saved step, learning rate,
plateau and at-chance state, random generator and dropout seeds. The position within the epoch is
restored as a step count: the rest of that epoch is drawn from a freshly shuffled stream, so a few
images of the interrupted epoch may be seen twice and others not at all; with `--deterministic`
(train/run/determinism.py) it is the rest of the same epoch, and the run continues bit for bit.
"""

import functools
import signal

import keras
import tensorflow as tf
from absl import logging

from common import imagenetv2
from train import config as config_lib
from train import corrupt_shards
from train.distributed import cluster
from train.distributed import service as data_service_lib
from train.errors import DeadNetworkError
from train.errors import NonFiniteError
from train.errors import TrainingError
from train.evaluation import metrics
from train import input_pipeline
from train import model as model_lib
from train.model_dir import checkpoints as checkpoints_lib
from train.model_dir import directory as model_dir_lib
from train import preparation
from train.run import determinism
from train.run import liveness
from train.run import loop as loop_lib
from train.run import progress as progress_lib
from train.run import schedule
from train.run import summaries
from train.run import training_run


def create_optimizer(config, learning_rate):
  """SGD with momentum reading its rate from the `learning_rate` variable (the schedule's state),
  times the warm-up's share in the first `config.warmup_steps` steps.

  Keras' SGD computes v <- m v - lr g; w <- w + v, the paper's rule once the gradient includes the
  weight decay (see `train_step`). fp16 wraps it in a dynamic loss scale.
  """
  # The warm-up reads the optimizer's own step count, checkpointed with it.
  sgd = keras.optimizers.SGD(
      learning_rate=lambda: learning_rate * schedule.warmup_factor(config, sgd.iterations),
      momentum=config.momentum)
  return keras.optimizers.LossScaleOptimizer(sgd) if config.precision == "fp16" else sgd


def train_step(model, optimizer, batch, prep, config, rng, measure=False):
  """One replica's step; returns `metrics.batch_sums` of the cross-entropy, and with `measure` also
  `liveness.alive_units` of the batch (which units of each ReLU layer fired).

  The loss is the mean over the global batch plus 0.5 * weight_decay * |w|^2 over the kernels, whose
  gradient adds weight_decay * w to the gradient before momentum: the paper's update rule, not the
  decoupled decay of Keras' `weight_decay`. Biases are not decayed: cuda-convnet, in which the
  paper's network was trained, has a weight cost for weights only; with `config.bias_lr_mult` their
  gradient is scaled (Caffe's `lr_mult: 2`, which with momentum SGD is the same as a doubled rate).
  With `config.jit` the forward and backward passes are XLA-compiled; the update stays outside,
  where the cross-replica gradient sum happens.
  """
  num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
  images = preparation.prepare_batch(batch, prep, training=True, rng=rng, lighting=config.lighting)
  labels = batch["label"]
  variables = model.trainable_variables
  network = model_lib.with_activations(model) if measure else model

  def gradients(images, labels):
    with tf.GradientTape() as tape:
      logits, activations = network(images, training=True) if measure else (network(
          images, training=True), None)
      per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
      decay = tf.add_n(
          [tf.reduce_sum(tf.square(v)) for v in variables if v.path.endswith("kernel")])
      loss = (tf.reduce_sum(per_example) / config.batch_size +
              0.5 * config.weight_decay * decay / num_replicas)
      scaled_loss = optimizer.scale_loss(loss)
    stats = metrics.batch_sums(per_example, logits, labels)
    return (tape.gradient(scaled_loss,
                          variables), stats, liveness.alive_units(activations) if measure else ())

  grads, stats, alive = tf.function(gradients, jit_compile=config.jit)(images, labels)
  if config.bias_lr_mult != 1:
    grads = [
        g * config.bias_lr_mult if v.path.endswith("bias") else g for g, v in zip(grads, variables)
    ]
  optimizer.apply(grads, variables)
  return (stats, alive) if measure else stats


def _steps_per_epoch(config, manifest):
  """Full batches in one pass over what can be read of the training split (see --skip_corrupt)."""
  images = manifest.num_examples("train")
  if config.skip_corrupt:
    images = 0
    for path, (readable, listed) in corrupt_shards.count_readable(manifest, "train").items():
      images += readable
      if readable < listed:
        logging.warning(
            "%s: %d of its %d records are readable; --skip_corrupt skips the other %d "
            "in every epoch", path, readable, listed, listed - readable)
    if images < manifest.num_examples("train"):
      logging.warning("An epoch is the %d readable training images of the %d the manifest lists",
                      images, manifest.num_examples("train"))
  if images < config.batch_size:
    readable = " readable" if config.skip_corrupt else ""
    raise TrainingError(f"--batch_size={config.batch_size} exceeds the {images}{readable} "
                        "training images")
  return images // config.batch_size


def _build(config, manifest, strategy):
  """The network, training state and optimizer, or a TrainingError naming the setting at fault."""
  with strategy.scope():
    try:
      model = model_lib.alexnet(manifest.num_classes, config.groups, config.dropout, config.width,
                                config.bias_init, config.weight_init)
    except ValueError as e:
      raise TrainingError(f"cannot build the network: {e}") from None
    state = schedule.create_state(config)
    optimizer = create_optimizer(config, state["learning_rate"])
    optimizer.build(model.trainable_variables)
  return model, state, optimizer


def _set_up(config, manifest, model_dir):
  """Checks everything that can be checked before anything is written to `model_dir` (the
  settings, the cluster, the batch size against the replicas and the data), then sets the
  determinism and precision asked for.

  Returns:
    `(task, strategy, steps_per_epoch, total_steps)`: this process's `cluster.Task` (None outside a
    cluster) and its strategy, the epoch and the run's last step.
  """
  if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
    raise TrainingError(f"{model_dir}: --model_dir names a file, not a directory")
  if not manifest.has_split("train") and (variant := imagenetv2.variant_of(manifest.data)):
    raise TrainingError(imagenetv2.not_for_training(manifest.directory, variant))
  task = cluster.read_tf_config()
  if config.data_service and task is not None:
    # Each trainer would keep its share of the files the service hands out dynamically, a share of
    # a share: most files would never be read. Not supported rather than silently wrong.
    raise TrainingError("--data_service with TF_CONFIG (several trainers) is not supported; "
                        "use one trainer per --data_service")
  if error := determinism.refusal(config, task):
    raise TrainingError(error)
  if config.deterministic:
    determinism.enable(config)
  keras.mixed_precision.set_global_policy(config_lib.PRECISION_POLICIES[config.precision])
  strategy = cluster.create_strategy(task)
  if task is not None:
    cluster.check_same_dataset(task, manifest)
    cluster.log_share(task, strategy, manifest, config.batch_size)
  if config.batch_size % strategy.num_replicas_in_sync:
    raise TrainingError(f"--batch_size={config.batch_size} does not split over "
                        f"{strategy.num_replicas_in_sync} replicas")
  if config.data_service and (error := data_service_lib.check_address(config.data_service)):
    raise TrainingError(error)
  steps_per_epoch = _steps_per_epoch(config, manifest)
  total_steps = config.epochs * steps_per_epoch
  total_steps = min(total_steps, config.max_steps) if config.max_steps else total_steps
  if not manifest.has_split("validation"):
    logging.warning("%s has no validation split: no evaluation, and no plateau schedule",
                    manifest.directory)
  return task, strategy, steps_per_epoch, total_steps


def _training_data(config, manifest, strategy, step, steps_per_epoch):
  """The training split's batches for `strategy`'s replicas, through `--data_service` if given;
  deterministic, from `step`'s place in its epoch on (what an uninterrupted run reads next)."""
  stream = input_pipeline.Stream("train", batch_size=config.batch_size, training=True,
                                 skip_corrupt=config.skip_corrupt,
                                 shuffle_buffer=config.shuffle_buffer, seed=config.seed,
                                 deterministic=config.deterministic,
                                 start_epoch=step // steps_per_epoch,
                                 skip_batches=step % steps_per_epoch)
  service = (functools.partial(data_service_lib.distribute, address=config.data_service)
             if config.data_service else None)
  return input_pipeline.distribute_dataset(strategy, manifest, stream, service)


def train_and_evaluate(config, manifest, model_dir):
  """Trains on the manifest's train split, evaluating on validation; resumes from `model_dir`.

  Everything that can be checked (the settings, the network they describe, the batch size against
  the data) is checked before anything is written to `model_dir`.

  Args:
    config: a `train.config.Config`.
    manifest: the dataset's `common.dataset.Manifest`.
    model_dir: directory for config.json, mean.npy, checkpoints (ckpt/, best/) and summaries.

  Returns:
    The last validation metrics dict, or None if there was no evaluation.

  Raises:
    TrainingError (or a subclass) for user-fixable problems: a locked or mismatched model
      directory, a corrupt checkpoint, a non-finite loss or weight, an eval count mismatch.
    train.errors.CorruptDataError: a shard failed to read.
  """
  task, strategy, steps_per_epoch, total_steps = _set_up(config, manifest, model_dir)
  model, state, optimizer = _build(config, manifest, strategy)
  chief = cluster.is_chief(strategy)
  with model_dir_lib.lock(model_dir, chief):
    if chief:
      model_dir_lib.check(config, manifest, model_dir)
    checkpoints = checkpoints_lib.Checkpoints(model_dir, chief, model=model, optimizer=optimizer,
                                              dropout_seeds=model_lib.seed_states(model), **state)
    step = int(state["step"].numpy())
    if step >= total_steps:
      logging.info("Step %d already reaches the %d steps asked for; nothing to train", step,
                   total_steps)
      return None
    if chief:  # Only now: config.json records the settings of a run that trains.
      model_dir_lib.write(config, manifest, model_dir)
    prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
    train_loop = loop_lib.make_train_loop(
        strategy, lambda batch, measure: train_step(model, optimizer, batch, prep, config, state[
            "rng"], measure))
    boundaries = loop_lib.Boundaries.from_config(config, steps_per_epoch, total_steps, step,
                                                 validation=manifest.has_split("validation"))
    run = training_run.TrainingRun(config, manifest, strategy, boundaries, model=model, state=state,
                                   checkpoints=checkpoints,
                                   writers=summaries.SummaryWriters(model_dir, chief), prep=prep)
    stop = progress_lib.StopFlag()
    # In a cluster SIGTERM goes to the handler, which makes every worker save the same step.
    preemption = task and cluster.Preemption(strategy, checkpoints.reader, run.save)
    signums = (signal.SIGTERM, signal.SIGINT) if task is None else (signal.SIGINT,)
    dataset = _training_data(config, manifest, strategy, step, steps_per_epoch)
    try:
      with stop.installed(signums), cluster.reporting_lost_peers(task, lambda: run.step):
        run.train(dataset, train_loop, stop, preemption)
    except NonFiniteError:
      run.close("non-finite, this step not saved")
      raise
    if run.death:
      run.close("the network is dead", chance_note=False)
      raise DeadNetworkError(run.death)
    run.writers.close()
  if task is not None:
    logging.info("Weights fingerprint %s: every worker must log the same",
                 cluster.weights_fingerprint(model))
  run.close(f"{stop.requested}; rerun the same command to resume" if stop.
            requested else f"reached --max_steps={config.max_steps}" if total_steps ==
            config.max_steps else f"reached --epochs={config.epochs}")
  return run.validation
