r"""Stage 1 resume: a build stopped at 60% of its time, rerun, against an uninterrupted build.

  python -m benchmarks.bench_resume [--num_images 3000] [--rounds 3] [--stop_at 0.6] [--work_dir DIR]

Makes the same ImageNet-like JPEGs as `bench_preprocess`, then per round: times an uninterrupted
`build_shards` (default runner, default shard count), starts it again into a fresh folder, kills
its whole process group (kill -9, as a closed terminal or a lost machine) at `--stop_at` of that
time, and times the rerun of the same command. It prints the rerun's time as a fraction of the
uninterrupted one beside the fraction of shards the rerun had to convert; the issue's goal is that
the first is within 0.1 of the second, the rest being start-up and planning.
Run by hand; not part of the tests.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

from preprocess.job import beam_logs

beam_logs.silence_import_warnings()  # before Beam is imported

from benchmarks import bench_preprocess  # noqa: E402
from preprocess.conversion import resume  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 3000, "Training images to build.")
flags.DEFINE_integer("rounds", 3, "Uninterrupted / stopped / rerun rounds.")
flags.DEFINE_float("stop_at", 0.6, "Fraction of the uninterrupted time at which to stop.")
flags.DEFINE_string("work_dir", "bench_out/resume", "Scratch folder (inputs are reused).")


def _command(input_dir, output_dir):
  return [
      sys.executable, "-m", "preprocess.build_shards", "--input_dir", input_dir, "--output_dir",
      output_dir
  ]


def _timed_build(input_dir, output_dir):
  start = time.perf_counter()
  subprocess.run(_command(input_dir, output_dir), check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  return time.perf_counter() - start


def main(_):
  input_dir = os.path.join(FLAGS.work_dir, "imagenet")
  if not os.path.exists(input_dir):
    bench_preprocess.make_inputs(input_dir, FLAGS.num_images)
  for round_index in range(FLAGS.rounds):
    full_dir = os.path.join(FLAGS.work_dir, "full")
    stopped_dir = os.path.join(FLAGS.work_dir, "stopped")
    for folder in (full_dir, stopped_dir):
      shutil.rmtree(folder, ignore_errors=True)
    full = _timed_build(input_dir, full_dir)
    job = subprocess.Popen(_command(input_dir, stopped_dir), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(FLAGS.stop_at * full)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    results = os.path.join(stopped_dir, resume.RESULTS_NAME)
    finished = len([n for n in os.listdir(results) if n.endswith(".json")
                   ]) if os.path.isdir(results) else 0
    rerun = _timed_build(input_dir, stopped_dir)
    with open(os.path.join(stopped_dir, "manifest.json")) as f:
      kept = json.load(f)["resume"]
    with open(os.path.join(full_dir, "manifest.json")) as f:
      num_shards = json.load(f)["resume"]["num_shards"]
    converted = (num_shards - kept["kept_shards"]) / num_shards
    print(
        f"round {round_index + 1}: uninterrupted {full:.1f} s; stopped at {FLAGS.stop_at:.0%} "
        f"with {finished} of {num_shards} shards finished; rerun {rerun:.1f} s = "
        f"{rerun / full:.2f} of the uninterrupted time, converting {converted:.2f} of the shards "
        f"(kept {kept['kept_shards']}, difference {rerun / full - converted:+.2f})", flush=True)


if __name__ == "__main__":
  app.run(main)
