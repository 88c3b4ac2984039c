"""Several training steps per compiled call, and where each such loop must end.

Every call of a `tf.function` from Python costs a dispatch (argument flattening, the executor's
start, the return): on a CPU at a tiny width about a millisecond per step, which a fast accelerator
at 150 steps a second would feel (benchmarks/bench_steps_per_loop.py). `make_train_loop` runs
`steps` steps inside one call, reading the distributed iterator inside it, as Keras'
`steps_per_execution` and the TF model garden do. Python sees the model only between loops, so a
loop ends wherever Python must act: a log line, a checkpoint, an epoch's end (evaluation, the step
schedule), the end of each window of the at-chance check (train/run/chance.py) and the last step.
The last step of each loop also measures which units fired (train/run/liveness.py), so that every log
line can say whether the network is alive while the other steps do not pay for it.
"""

import functools

import tensorflow as tf

from train.errors import TrainingError
from train import input_pipeline
from train.run import chance


def make_train_loop(strategy, step_fn):
  """The compiled loop: `steps` calls of `step_fn` on the iterator's next batches.

  Args:
    strategy: the `tf.distribute.Strategy` the iterator belongs to.
    step_fn: one replica's step, `step_fn(batch, measure)`: `metrics.batch_sums` out, and with
      `measure` also `liveness.alive_units`.

  Returns:
    `train_loop(iterator, steps)`, returning the steps' statistics summed over replicas and steps,
    and the last step's `alive_units` summed over replicas (a unit that fired on any replica is
    positive).
  """
  total = functools.partial(strategy.reduce, tf.distribute.ReduceOp.SUM, axis=None)

  @tf.function
  def train_loop(iterator, steps):
    stats = tf.zeros([4])
    for _ in tf.range(steps - 1):
      stats += total(strategy.run(functools.partial(step_fn, measure=False),
                                  args=(next(iterator),)))
    last_stats, alive = strategy.run(functools.partial(step_fn, measure=True),
                                     args=(next(iterator),))
    return stats + total(last_stats), total(alive)

  return train_loop


def loop_length(step, config, steps_per_epoch, total_steps, start_step):
  """Steps of the loop starting after `step`: at most `config.steps_per_loop`, never crossing a
  multiple of `log_every`, `checkpoint_every` or the at-chance window, an epoch's end or
  `total_steps`. A run's first step is a loop of its own: its loss is logged and checked against
  ln(num_classes)."""
  if step == start_step:
    return 1
  end = min(step + config.steps_per_loop, total_steps)
  for every in (config.log_every, config.checkpoint_every, steps_per_epoch,
                chance.window_steps(steps_per_epoch)):
    end = min(end, (step // every + 1) * every)
  return end - step


def run_loop(train_loop, iterator, steps, manifest):
  """Runs one loop; returns its summed statistics and its last step's units that fired (see
  `make_train_loop`). A read error names the shard at fault."""
  try:
    # A tensor, not a Python int: one trace serves every loop length.
    return train_loop(iterator, tf.constant(steps))
  except tf.errors.OutOfRangeError:  # Only when --skip_corrupt has dropped every record.
    raise TrainingError(f"{manifest.directory}: no readable training records") from None
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    raise input_pipeline.locate_corrupt_shard(manifest, "train", e) from None
