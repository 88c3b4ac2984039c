r"""What the duplicate audit costs stage 1: the same build with and without it, in turn.

  python -m benchmarks.bench_audit --input_dir ../shared/imagenette --work_dir /tmp/bench_audit
  python -m benchmarks.bench_audit --work_dir DIR [--runs 3] [--images_per_class 300]

Builds the input (real photographs are the fair case: `--input_dir` an ImageNet tree such as
Imagenette; without it a generated sample tree, whose images are augmentations of one photograph
per class and so a pessimistic case, full of near copies to confirm) with `python -m
preprocess.build_shards` on the default runner, alternately with the audit (the default) and with
`--noaudit_duplicates`, `--runs` times each, timed from launch to exit. Reports each run's wall
time and CPU time (the job's processes), the median of each, the ratio of the medians (goal: at most
1.05) and the ratio pair by pair, with what the audit found.

The whole build's ratio is a difference of a few percent between runs that vary by more on a shared
machine, so it also reports the audit's own cost per image, in one process, interleaved: CPU time of
`convert_image` with the fingerprint (thumbnail, pHash, digest) over without, on photographs of
ImageNet's typical size (scikit-image's, resized to 500x375 and the like and saved as JPEG; the
Imagenette copies here are 224x224, whose conversion is cheaper, so the fingerprint's fixed cost
weighs more there). Run by hand; not part of the tests.
"""

import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
from PIL import Image
from skimage import data as skimage_data

from benchmarks import bench_learning
from preprocess.audit import fingerprint
from preprocess.conversion import convert
from sample import make_sample_data

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children_cpu():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def build_seconds(input_dir, output_dir, audit):
  """Wall and CPU seconds of one build from nothing (CPU: the processes it waited for), and its
  manifest."""
  command = [
      sys.executable, "-m", "preprocess.build_shards", f"--input_dir={input_dir}",
      f"--output_dir={output_dir}", "--overwrite", "--progress_seconds=3600"
  ]
  command += [] if audit else ["--noaudit_duplicates"]
  start, cpu = time.perf_counter(), _children_cpu()
  subprocess.run(command, cwd=REPO, check=True, capture_output=True)
  seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
  with open(os.path.join(output_dir, "manifest.json")) as f:
    return seconds, cpu, json.load(f)


def per_image_cost(rounds=10):
  """{split: CPU of convert_image with the fingerprint over without}, on ImageNet-sized JPEGs."""
  photos = [
      skimage_data.astronaut(),
      skimage_data.chelsea(),
      skimage_data.coffee(),
      skimage_data.rocket(),
      skimage_data.cat(),
      skimage_data.retina()
  ]
  blobs = []
  for photo in photos:
    for size in ((500, 375), (375, 500), (500, 333), (640, 480)):
      buffer = io.BytesIO()
      Image.fromarray(photo).convert("RGB").resize(size).save(buffer, "JPEG", quality=92)
      blobs.append(buffer.getvalue())
  cpu = {(split, audit): 0.0 for split in ("train", "validation") for audit in (False, True)}
  for _ in range(rounds):
    for blob, split, audit in ((b, s, a) for b in blobs for s, a in cpu):
      start = time.process_time()
      image = convert.convert_image(blob, stored_pixels=split == "train", thumbnail=audit)
      if audit:
        fingerprint.phash(image.thumbnail)
        fingerprint.digest(image.encoded)
      cpu[split, audit] += time.process_time() - start
  return {split: cpu[split, True] / cpu[split, False] for split in ("train", "validation")}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  input_dir = FLAGS.input_dir
  if not input_dir:
    input_dir = os.path.join(FLAGS.work_dir, "sample")
    if not os.path.exists(input_dir):
      make_sample_data.make_sample_tree(input_dir, images_per_class_train=FLAGS.images_per_class,
                                        images_per_class_val=FLAGS.images_per_class // 6,
                                        broken_files=False)
  times, cpus = {True: [], False: []}, {True: [], False: []}
  counts = None
  build_seconds(input_dir, os.path.join(FLAGS.work_dir, "warm-up"), True)  # page cache, imports
  for run in range(FLAGS.runs):
    for audit in (True, False):
      seconds, cpu, manifest = build_seconds(input_dir, os.path.join(FLAGS.work_dir, f"out{audit}"),
                                             audit)
      times[audit].append(seconds)
      cpus[audit].append(cpu)
      counts = manifest["audit"]["counts"] if audit else counts
      logging.info("run %d, audit %s: %.1f s (load %.2f)", run + 1, audit, seconds,
                   os.getloadavg()[1])
  images = sum(split["files_seen"] for split in manifest["splits"].values())
  pairs = [on / off for on, off in zip(times[True], times[False])]
  cpu_pairs = [on / off for on, off in zip(cpus[True], cpus[False])]
  per_image = per_image_cost()
  lines = [
      f"machine: {bench_learning.machine()}, load (5 min) {os.getloadavg()[1]:.2f}",
      f"input: {input_dir} ({images} files)",
      f"with the audit: {', '.join(f'{t:.1f}' for t in times[True])} s; median "
      f"{statistics.median(times[True]):.1f} s",
      f"without: {', '.join(f'{t:.1f}' for t in times[False])} s; median "
      f"{statistics.median(times[False]):.1f} s",
      f"ratio of the medians: {statistics.median(times[True]) / statistics.median(times[False]):.3f}"
      f"; pair by pair: {', '.join(f'{r:.3f}' for r in pairs)}",
      f"CPU seconds with the audit: {', '.join(f'{t:.1f}' for t in cpus[True])}; without: "
      f"{', '.join(f'{t:.1f}' for t in cpus[False])}; ratio of the medians "
      f"{statistics.median(cpus[True]) / statistics.median(cpus[False]):.3f}; pair by pair: "
      f"{', '.join(f'{r:.3f}' for r in cpu_pairs)}",
      f"per image, ImageNet-sized JPEGs, convert_image with the fingerprint over without (CPU): "
      f"train {per_image['train']:.3f}, validation {per_image['validation']:.3f}",
      f"the audit found: {json.dumps(counts, sort_keys=True)}"
  ]
  with open(os.path.join(FLAGS.work_dir, "audit.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_string("input_dir", None, "An ImageNet tree (default: a generated sample tree).")
  flags.DEFINE_string("work_dir", None, "Where the outputs and audit.md go.")
  flags.DEFINE_integer("runs", 3, "Builds of each kind.", lower_bound=1)
  flags.DEFINE_integer("images_per_class", 300, "Training images per class of the generated tree.",
                       lower_bound=6)
  flags.mark_flag_as_required("work_dir")


if __name__ == "__main__":
  define_flags()
  app.run(main)
