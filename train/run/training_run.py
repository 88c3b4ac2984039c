"""One training run from its first loop to its last line: the loops, and what each loop's end does.

`TrainingRun` holds what a run trains and writes (the model, its training state, checkpoints,
summaries, progress). `train` runs the compiled loops (train/run/loop.py) until the last step, a
stop or a dead network; after each loop `after_loop` does what `loop.Boundaries` says is due at
that step, in this order: the liveness check, the at-chance fold, the log line, the evaluation (the
plateau schedule, the best model), the epoch's schedule and the save.
"""

from absl import logging

from train.errors import TrainingError
from train.evaluation import scoring
from train import input_pipeline
from train.run import loop as loop_lib
from train.run import progress as progress_lib
from train.run import schedule


class TrainingRun:
  """A run's state between loops: its last step, last validation and, once found, its death.

  Args:
    config: the `train.config.Config`.
    manifest: the dataset's `Manifest`.
    strategy: the `tf.distribute.Strategy` the model was built in.
    boundaries: the run's `loop.Boundaries` (its `start_step` is the step restored).
    model, state, checkpoints, writers, prep: the network, `schedule.create_state`'s variables
      (restored), the `checkpoints.Checkpoints`, the `summaries.SummaryWriters` and the
      dataset's `Preparation`.
  """

  def __init__(self, config, manifest, strategy, boundaries, *, model, state, checkpoints, writers,
               prep):
    self.config, self.manifest, self.strategy, self.boundaries = (config, manifest, strategy,
                                                                  boundaries)
    self.model, self.state, self.checkpoints, self.writers, self.prep = (model, state, checkpoints,
                                                                         writers, prep)
    self.eval_fn = scoring.make_eval_fn(strategy, model, prep)
    self.step = boundaries.start_step
    since = int(state["chance_since"].numpy())
    self.progress = progress_lib.Progress(config, boundaries.steps_per_epoch,
                                          boundaries.total_steps, self.step, writers, model,
                                          manifest.num_classes, None if since < 0 else since,
                                          tuple(state["chance_partial"].numpy()))
    self.validation, self.death = None, None

  def train(self, dataset, train_loop, stop, preemption=None):
    """Trains on `dataset` (distributed) in `train_loop`'s loops until the last step, a stop
    (`stop`, a `progress.StopFlag`, or a `cluster.Preemption`) or a dead network; after a stop or
    a death, saves where it stopped."""
    iterator = iter(dataset)
    if self.progress.fresh_start:
      # Drawn just before the first step's batch: one batch of a run's first epoch is shown and not
      # trained on (a stream of its own when deterministic, so that a resumed run's batches are an
      # uninterrupted run's).
      self.show_inputs(iter(dataset) if self.config.deterministic else iterator)
    while self.step < self.boundaries.total_steps and not stop.requested:
      steps = self.boundaries.loop_length(self.step)
      self.after_loop(steps, *loop_lib.run_loop(train_loop, iterator, steps, self.manifest))
      if self.death:  # Training on would only burn GPU hours.
        break
      if preemption is not None:
        preemption.after_step(self.step)
        stop.requested = stop.requested or preemption.requested
    if stop.requested or self.death:
      self.save(self.step)

  def show_inputs(self, iterator):
    """Writes a few augmented crops of the iterator's next batch to TensorBoard."""
    batch = input_pipeline.next_batch(iterator, self.manifest, "train")
    if batch is None:  # Only when --skip_corrupt has dropped every record.
      raise TrainingError(f"{self.manifest.directory}: no readable training records")
    self.writers.images(batch, self.strategy, self.prep, self.step)

  def after_loop(self, steps, loop_stats, alive):
    """Counts a loop of `steps` steps (`loop.run_loop`'s statistics and units that fired), then
    does what is due at its last step; sets `death` instead when the network is dead."""
    self.progress.add(self.step + 1, loop_stats, alive)
    self.step += steps
    step, due = self.step, self.boundaries
    epoch = step // due.steps_per_epoch
    self.state["step"].assign(step)
    self.state["epoch"].assign(epoch)
    # Before the at-chance verdict, whose advice (wait) is for a network that is alive.
    self.death = self.progress.death(step)
    if self.death:
      return
    if due.folds(step):
      self.progress.fold(step)
    if due.logs(step):
      self.progress.log(step, schedule.rate_at(self.config, self.state, step))
    if due.evaluates(step):
      self.evaluate(step)
    if due.ends_epoch(step):
      schedule.end_epoch(self.config, self.state, epoch, self.progress.chance.at_chance)
    if due.saves(step):
      self.save(step)

  def evaluate(self, step):
    """Scores the validation split, logs and writes the figures, steps the plateau schedule and
    keeps the best model; first checks that no loss or weight is NaN or infinite."""
    self.progress.check_finite(step)
    self.validation = validation = scoring.evaluate_split(self.strategy, self.eval_fn,
                                                          self.manifest, "validation",
                                                          batch_size=self.config.batch_size,
                                                          ten_crop=self.config.ten_crop_eval,
                                                          skip_corrupt=self.config.skip_corrupt)
    validation["step"] = step
    logging.info("Validation - Loss: %.4f Accuracy: %.4f Top 5 Accuracy: %.4f (%d images)",
                 validation["loss"], validation["top1"], validation["top5"], validation["count"])
    self.writers.scalars(
        "eval", step, {
            "eval/loss": validation["loss"], "eval/top1": validation["top1"],
            "eval/top5": validation["top5"]
        })
    if schedule.update_on_validation(self.config, self.state, 1.0 - validation["top1"],
                                     at_chance=self.progress.chance.at_chance):
      self.checkpoints.save_best(step, self.model)

  def save(self, step):
    """Saves the checkpoint of `step` with the at-chance and death state, after the NaN checks
    and a fold; also `cluster.Preemption`'s save (every worker saves the same step)."""
    self.progress.check_finite(step)
    self.progress.fold(step)
    chance = self.progress.chance
    self.state["dead_at"].assign(step if self.death else -1)
    self.state["chance_since"].assign(-1 if chance.since is None else chance.since)
    self.state["chance_partial"].assign(chance.partial)
    self.checkpoints.save(step, self.model)

  def close(self, reason, chance_note=True):
    """Logs the run's last line (`progress.log_closing`), with the at-chance clause if asked."""
    note = self.progress.chance.closing_note(self.step) if chance_note else ""
    progress_lib.log_closing(reason, self.step, self.boundaries.steps_per_epoch, self.validation,
                             self.checkpoints, note)
