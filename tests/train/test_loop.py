"""The training loop's boundaries (train/run/loop.py): `itstime`, what `Boundaries` says is due at
each step, and loops that end exactly where something is due. Pure Python: no training here (the
runs that follow these boundaries: test_steps_per_loop.py, test_determinism.py)."""

import itertools

import pytest

from train.run import chance
from train.run import loop as loop_lib


@pytest.mark.parametrize(
    "step, every, total_steps, options, expected",
    [
        (3, 3, 10, {}, True),  # a multiple of `every`
        (4, 3, 10, {}, False),
        (10, 3, 10, {}, True),  # the last step
        (10, 3, 10, dict(last=False), False),
        (9, 3, 10, dict(last=False), True),
        (1, 3, 10, {}, False),
        (1, 3, 10, dict(first=True), True),  # a fresh run's first step
        (7, 3, 10, dict(first=True, start_step=6), True),  # a resumed run's first step
        (7, 3, 10, dict(start_step=6), False),
        (1, 3, 10, dict(first=True, start_step=6), False),  # not this run's first step
        (5, 1, 10, dict(last=False), True),  # every step
        (12, 4, 10, {}, True),  # past the last step: multiples only
    ])
def test_itstime(step, every, total_steps, options, expected):
  assert loop_lib.itstime(step, every, total_steps, **options) is expected


def _boundaries(steps_per_epoch=4, total_steps=10, start_step=0, log_every=3, checkpoint_every=5,
                eval_every_epochs=2, steps_per_loop=4, validation=True):
  return loop_lib.Boundaries(steps_per_epoch, total_steps, start_step, log_every, checkpoint_every,
                             eval_every_epochs, steps_per_loop, validation)


def _steps(boundaries, question):
  return [
      step for step in range(boundaries.start_step + 1, boundaries.total_steps + 1)
      if getattr(boundaries, question)(step)
  ]


@pytest.mark.parametrize(
    "question, expected",
    [
        ("logs", [1, 3, 6, 9]),  # every 3, and the run's first step
        ("folds", [4, 8]),  # the at-chance windows: an epoch here (shorter than 100)
        ("evaluates", [8, 10]),  # every second epoch's end, and the last step
        ("saves", [4, 5, 8, 10]),  # every 5, each epoch's end, the last step
        ("ends_epoch", [4, 8]),
    ])
def test_what_is_due_at_each_step(question, expected):
  assert _steps(_boundaries(), question) == expected


def test_a_resumed_run_logs_its_first_step_and_no_validation_means_no_evaluation():
  assert _steps(_boundaries(start_step=4), "logs") == [5, 6, 9]
  assert _steps(_boundaries(validation=False), "evaluates") == []


def _loop_ends(boundaries):
  """The last step of each loop of a run, as the trainer walks them."""
  ends, step = [], boundaries.start_step
  while step < boundaries.total_steps:
    step += boundaries.loop_length(step)
    ends.append(step)
  return ends


def test_loops_of_a_small_run():
  # Epochs of 4 steps, 12 steps: the first step alone, the log lines at 3, 6, 9, the epochs' ends
  # (windows, evaluations, saves) at 4, 8, 12, the saves at 5, 10; never more than 4 steps.
  boundaries = _boundaries(total_steps=12, eval_every_epochs=1)
  assert _loop_ends(boundaries) == [1, 3, 4, 5, 6, 8, 9, 10, 12]
  assert _loop_ends(_boundaries(total_steps=12, start_step=5)) == [6, 8, 9, 10, 12]
  # Epochs of 250 steps: the at-chance window is 100 steps, not the epoch.
  long = _boundaries(steps_per_epoch=250, total_steps=600, log_every=1000, checkpoint_every=1000,
                     steps_per_loop=64)
  assert _loop_ends(long) == [1, 65, 100, 164, 200, 250, 300, 364, 400, 464, 500, 564, 600]


@pytest.mark.parametrize(
    "steps_per_epoch, log_every, checkpoint_every, steps_per_loop",
    list(itertools.product((1, 3, 4, 150), (1, 3, 100), (2, 5, 1000), (1, 3, 10))))
def test_loops_end_exactly_where_anything_is_due(steps_per_epoch, log_every, checkpoint_every,
                                                 steps_per_loop):
  window = chance.window_steps(steps_per_epoch)
  for start_step, total_steps in ((0, 2 * steps_per_epoch + 1), (3, 3 * steps_per_epoch)):
    if start_step >= total_steps:
      continue
    boundaries = loop_lib.Boundaries(steps_per_epoch, total_steps, start_step, log_every,
                                     checkpoint_every, 1, steps_per_loop)
    # Stated here once more, without itstime: a log line, checkpoint, at-chance window, epoch's
    # end, the last step and the run's first step (logged).
    due = {
        step for step in range(start_step + 1, total_steps + 1)
        if step == start_step + 1 or step == total_steps or any(
            step % every == 0 for every in (log_every, checkpoint_every, window, steps_per_epoch))
    }
    ends = _loop_ends(boundaries)
    assert due <= set(ends) and ends[-1] == total_steps
    for first, end in zip([start_step] + ends, ends):
      assert end - first == steps_per_loop or end in due, (first, end)
      assert end - first <= steps_per_loop
