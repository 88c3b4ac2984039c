"""Several training steps per compiled call, and where each such loop must end.

Every call of a `tf.function` from Python costs a dispatch (argument flattening, the executor's
start, the return): on a CPU at a tiny width about a millisecond per step, which a fast accelerator
at 150 steps a second would feel (benchmarks/bench_steps_per_loop.py). `make_train_loop` runs
`steps` steps inside one call, reading the distributed iterator inside it, as Keras'
`steps_per_execution` and the TF model garden do. Python sees the model only between loops, so a
loop ends wherever Python must act: a log line, a checkpoint, an epoch's end (evaluation, the step
schedule), the end of each window of the at-chance check (train/run/chance.py) and the last step.
The last step of each loop also measures which units fired (train/run/liveness.py), so that every
log line can say whether the network is alive while the other steps do not pay for it.

`Boundaries` says when each of these is due, each through one helper (`itstime`, as big_vision's
`u.itstime`), and a loop ends at the first step at which any is: the steps are defined once.
"""

import dataclasses
import functools

import tensorflow as tf

from train import corrupt_shards
from train.errors import TrainingError
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


def itstime(step, every, total_steps, *, first=False, last=True, start_step=0):
  """Whether something done every `every` steps is due once `step` (1-based) has been trained: at
  each multiple of `every`; with `last` also at `total_steps`; with `first` also at a run's first
  step (`start_step` + 1, a resumed run's too)."""
  return (step % every == 0 or (last and step == total_steps) or (first and step == start_step + 1))


@dataclasses.dataclass(frozen=True)
class Boundaries:
  """The steps at which the training loop acts, each `step` being the last step trained.

  Attributes:
    steps_per_epoch, total_steps: the run's epoch and its last step.
    start_step: the step this run (fresh or resumed) started from.
    log_every, checkpoint_every, eval_every_epochs, steps_per_loop: the settings of the same names.
    validation: whether the dataset has a validation split to evaluate on.
  """
  steps_per_epoch: int
  total_steps: int
  start_step: int
  log_every: int
  checkpoint_every: int
  eval_every_epochs: int
  steps_per_loop: int
  validation: bool = True

  @classmethod
  def from_config(cls, config, steps_per_epoch, total_steps, start_step, validation=True):
    return cls(steps_per_epoch, total_steps, start_step, config.log_every, config.checkpoint_every,
               config.eval_every_epochs, config.steps_per_loop, validation)

  def ends_epoch(self, step):
    """At each epoch's end (the step schedule)."""
    return itstime(step, self.steps_per_epoch, self.total_steps, last=False)

  def logs(self, step):
    """Every `log_every` steps and at a run's first step (its loss is checked against ln(C))."""
    return itstime(step, self.log_every, self.total_steps, first=True, last=False,
                   start_step=self.start_step)

  def folds(self, step):
    """At the end of each window of the at-chance check (`chance.ChanceWatch`)."""
    return itstime(step, chance.window_steps(self.steps_per_epoch), self.total_steps, last=False)

  def evaluates(self, step):
    """At the end of every `eval_every_epochs`-th epoch and at the last step."""
    return self.validation and itstime(step, self.eval_every_epochs * self.steps_per_epoch,
                                       self.total_steps)

  def saves(self, step):
    """Every `checkpoint_every` steps, at each epoch's end and at the last step."""
    return self.ends_epoch(step) or itstime(step, self.checkpoint_every, self.total_steps)

  def loop_length(self, step):
    """Steps of the loop starting after `step`: up to the first step at which anything is due, at
    most `steps_per_loop` (the last step is always due: a loop never runs past it)."""
    for length in range(1, self.steps_per_loop):
      end = step + length
      # `saves` holds every epoch's end too.
      if self.logs(end) or self.folds(end) or self.evaluates(end) or self.saves(end):
        return length
    return self.steps_per_loop


def run_loop(train_loop, iterator, steps, manifest):
  """Runs one loop; returns its summed statistics and its last step's units that fired (see
  `make_train_loop`). A read error names the shard at fault."""
  try:
    # A tensor, not a Python int: one trace serves every loop length.
    return train_loop(iterator, tf.constant(steps))
  except tf.errors.OutOfRangeError:  # Only when --skip_corrupt has dropped every record.
    raise TrainingError(f"{manifest.directory}: no readable training records") from None
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    raise corrupt_shards.locate(manifest, "train", e) from None
