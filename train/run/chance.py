"""Whether the network still predicts at chance, from the running mean of its training loss.

A freshly initialised AlexNet has nearly equal logits, so its cross-entropy is ln(num_classes)
(6.91 for 1,000 classes) whatever the image; with the paper's N(0, 0.01) weights it can stay
there for thousands of steps before the loss falls, and some runs never leave. `ChanceWatch`
says so in the log while it lasts, the closing line and `train.report` say so when a run ends
there, and the schedules (train/run/schedule.py) do not count that time: the plateau rule does not
cut the rate and the step schedule's epochs do not run while the network is at chance.

The band, measured (benchmarks/bench_flat_start.py: 100 classes, the paper's optimiser, width 0.5,
batch 32, 300 steps in windows of 25, each of the four init settings; benchmarks/README.md): while
the network was flat no window's mean fell below ln(C) at all, and the first windows rose up to
14% above it (the paper's biases of 1; 9.8% with the warm-up, 0.9% with Caffe's biases), a
network that gives most of its probability to wrong classes. So a mean 1% below ln(C) is outside
anything a network at chance produced: only predictions better than a guess get there (1% below
ln(1000) gives the true class e^0.07 = 1.07 times its uniform share), and up to 50% above is still "no
better than chance" (issue 15's run sat 0.9% above); further above the loss is diverging, which
the first-loss and NaN checks speak to and a lower rate may cure, so the schedules act there.
"""

import math

from absl import logging

BAND_BELOW = 0.01  # Fractions of ln(num_classes); why these values: see the module docstring.
BAND_ABOVE = 0.5
WINDOW_STEPS = 100  # Steps of the running mean (at most an epoch: short runs get a verdict too).
# Known to the users of the paper's initialisation: Caffe's AlexNet (batch 256) stayed at 6.9 for
# up to 8,000 iterations before learning, 15,000 "as a rule of thumb", and 3 runs of 8 never left
# (BVLC/caffe#401 and #2085): about 3.8M images, three epochs of ILSVRC-2012.
KNOWN_FLAT_IMAGES = 15_000 * 256
ADVICE = ("--flagfile=train/imagenette.flags (Caffe's initialisation, measured to learn on "
          "Imagenette), or --bias_init=caffe (bvlc_alexnet's 0.1 for the paper's biases of 1), "
          "--warmup_steps=N, "
          "another --seed, or a wider network (--width) if you narrowed it; check the labels")


def in_band(loss, num_classes):
  """Whether a (running mean) training loss is near ln(num_classes): predictions at chance."""
  expected = math.log(num_classes)
  return expected * (1 - BAND_BELOW) <= loss <= expected * (1 + BAND_ABOVE)


def window_steps(steps_per_epoch):
  """Steps of the running mean: `WINDOW_STEPS`, or an epoch when that is shorter."""
  return min(WINDOW_STEPS, steps_per_epoch)


class ChanceWatch:
  """Means the training loss over windows of `window` steps (steps 1..window, window+1..2*window,
  ...: a loop ends at each window's end) and warns, at a bounded rate, while the last full
  window's mean stays near ln(num_classes).

  Aligned windows make the verdict a function of the steps alone, so that a resumed run, which
  restores `since` and the current window's sums from the checkpoint, decides as an
  uninterrupted one would. The first warning comes with the first window at chance, the next
  only once the step count has doubled since the last one (whether or not a noisy mean of small
  batches left the band in between): a run stuck from step 100 to 100,000 warns ten times.

  Args:
    num_classes: the dataset's classes.
    window: steps of each window.
    batch_size: images per step (the known flat phase is counted in images).
    since: the step from which the network was at chance before a resume, or None.
    partial: (loss sum, examples) of the current window before a resume.
  """

  def __init__(self, num_classes, window, batch_size, since=None, partial=(0.0, 0.0)):
    self.num_classes, self.window, self.batch_size = num_classes, window, batch_size
    self.since, self.partial, self.mean, self.warned_at = since, list(partial), None, None

  def fold(self, step, loss_sum, examples):
    """Adds the steps up to `step` (their summed loss and example count); at a window's end,
    decides. Returns whether the network is at chance."""
    self.partial[0] += loss_sum
    self.partial[1] += examples
    if step % self.window or not self.partial[1]:
      return self.at_chance
    self.mean = self.partial[0] / self.partial[1]
    self.partial = [0.0, 0.0]
    if not in_band(self.mean, self.num_classes):
      self.since = None
      return False
    if self.since is None:
      self.since = step - self.window
    if self.warned_at is None or step >= 2 * self.warned_at:
      self.warned_at = step
      logging.warning("%s", self.describe(step))
    return True

  @property
  def at_chance(self):
    return self.since is not None

  def describe(self, step):
    """The warning: at chance, for how long, whether the paper's initialisation does that."""
    steps = step - self.since
    images = steps * self.batch_size
    if images <= KNOWN_FLAT_IMAGES:
      verdict = (f"within what the paper's initialisation is known to do (Caffe's AlexNet stayed "
                 f"flat for up to {KNOWN_FLAT_IMAGES:,} images before learning); if it lasts "
                 f"longer, try {ADVICE}")
    else:
      verdict = (f"longer than the paper's initialisation is known to stay flat "
                 f"({KNOWN_FLAT_IMAGES:,} images); runs this long rarely recover: try {ADVICE}")
    return (f"Step {step}: the network still predicts at chance: the training loss, "
            f"{self.mean:.4f} over steps {step - self.window + 1}-{step}, has stayed near "
            f"ln({self.num_classes})={math.log(self.num_classes):.4f} for {steps} steps "
            f"({images:,} images, since step {self.since}); the learning rate schedule waits. "
            f"This is {verdict}")

  def closing_note(self, step):
    """A clause for the run's last line, or "" when the network is not (known to be) at chance."""
    if self.since is None:
      return ""
    loss = f"training loss {self.mean:.4f}" if self.mean is not None else "training loss"
    return (f"; the network still predicts at chance ({loss} near ln({self.num_classes}) since "
            f"step {self.since}, {step - self.since} steps): try {ADVICE}")
