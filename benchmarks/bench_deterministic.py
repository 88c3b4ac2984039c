"""What `--deterministic` costs: training images/s with and without it, the whole trainer.

  .venv/bin/python -m benchmarks.bench_deterministic [--width=0.25] [--steps=60] [--rounds=2]

Writes a synthetic JPEG dataset (crops of scikit-image's photographs, `bench_input_pipeline`),
then runs `python -m train.main` on it, alternating plain and `--deterministic` runs (op
determinism is process-wide, so each run is a process of its own), and reports the median of the
Images/s of each run's log lines after the first (the first holds the start-up). Figures from a
CPU shared with other processes are indicative only; compare the two modes of one invocation.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import re
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging

from benchmarks.bench_input_pipeline import write_synthetic_dataset

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def images_per_second(shards, model_dir, deterministic):
  """One trainer run; the median Images/s of its log lines after the first."""
  command = [
      sys.executable, "-m", "train.main", f"--shards={shards}", f"--model_dir={model_dir}",
      f"--width={FLAGS.width}", f"--batch_size={FLAGS.batch_size}", f"--max_steps={FLAGS.steps}",
      f"--log_every={FLAGS.log_every}", "--seed=0", "--checkpoint_every=100000",
      "--deterministic" if deterministic else "--nodeterministic"
  ]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
  rates = [float(rate) for rate in re.findall(r"Images/s: ([\d.]+)", result.stderr)]
  return statistics.median(rates[1:])


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as scratch:
    shards = os.path.join(scratch, "shards")
    os.makedirs(shards)
    # Enough images for the run without a second epoch: epochs are where the modes differ least.
    write_synthetic_dataset(shards, FLAGS.batch_size * (FLAGS.steps + 2))
    results = {False: [], True: []}
    for round_index in range(FLAGS.rounds):
      for deterministic in (False, True):
        model_dir = os.path.join(scratch, f"model-{round_index}-{deterministic}")
        results[deterministic].append(images_per_second(shards, model_dir, deterministic))
        logging.info("round %d, deterministic=%s: %.1f images/s", round_index, deterministic,
                     results[deterministic][-1])
  plain, deterministic = (statistics.median(results[mode]) for mode in (False, True))
  logging.info(
      "width %g, batch %d, %d steps: plain %.1f images/s, --deterministic %.1f images/s "
      "(%.0f%%)", FLAGS.width, FLAGS.batch_size, FLAGS.steps, plain, deterministic,
      100 * deterministic / plain)


def define_flags():
  flags.DEFINE_float("width", 0.25, "Channel multiplier of the network.", lower_bound=0)
  flags.DEFINE_integer("batch_size", 32, "Images per step.", lower_bound=1)
  flags.DEFINE_integer("steps", 60, "Steps per run.", lower_bound=2)
  flags.DEFINE_integer("log_every", 10, "Steps per log line (one Images/s figure each).",
                       lower_bound=1)
  flags.DEFINE_integer("rounds", 2, "Runs of each mode, alternating.", lower_bound=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
