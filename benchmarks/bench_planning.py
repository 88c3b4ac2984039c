r"""Stage-1 planning at ImageNet's shape: 1,000 classes, a flat validation folder, and the archives.

  python -m benchmarks.bench_planning [--per_class 20,40] [--val_per_class 10] [--work_dir DIR]

Builds trees shaped like ImageNet in everything but pixels (each "image" is a few bytes: planning
never reads images) and their archive form (a training tar of 1,000 class tars, a flat validation
tar, ground truth in the devkit layout), then runs the launcher's planning, `build.plan_input`,
once per form and size in a fresh process, and prints its wall time, the growth of the process's peak
RSS over what the imports took, and the size of the path list it holds. The archive form's planning
includes indexing, a Beam job on the default local runner, the path ImageNet's 140 GB take (these
archives are small enough for the launcher to index them itself, so that is switched off here). Two
sizes show whether planning is linear; both are extrapolated to 1,281,167 training images. Run by
hand; not part of the tests.
"""

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS

_CLASSES = 1000
_IMAGENET_TRAIN = 1_281_167


def _wnid(k):
  return f"n{10_000_000 + k:08d}"


def make_tree(root, per_class, val_per_class):
  """The extracted tree and, beside it, its archive form."""
  extracted, archived = os.path.join(root, "extracted"), os.path.join(root, "archived")
  os.makedirs(os.path.join(extracted, "val"))
  os.makedirs(archived)
  payload = b"\xff\xd8 not decoded while planning"
  with tarfile.open(os.path.join(archived, "train.tar"), "w", format=tarfile.USTAR_FORMAT) as outer:
    for k in range(_CLASSES):
      folder = os.path.join(extracted, "train", _wnid(k))
      os.makedirs(folder)
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(per_class):
          name = f"{_wnid(k)}_{i}.JPEG"
          with open(os.path.join(folder, name), "wb") as f:
            f.write(payload)
          _add(tar, name, payload)
      _add(outer, f"{_wnid(k)}.tar", inner.getvalue())
  labels = [_wnid(i % _CLASSES) for i in range(_CLASSES * val_per_class)]
  with tarfile.open(os.path.join(archived, "val.tar"), "w", format=tarfile.USTAR_FORMAT) as tar:
    for number in range(1, len(labels) + 1):
      name = f"ILSVRC2012_val_{number:08d}.JPEG"
      with open(os.path.join(extracted, "val", name), "wb") as f:
        f.write(payload)
      _add(tar, name, payload)
  for form in (extracted, archived):
    with open(os.path.join(form, "ILSVRC2012_validation_ground_truth.txt"), "w") as f:
      f.write("\n".join(labels) + "\n")
  return extracted, archived


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def plan_here(input_dir):
  """Runs the launcher's planning in this process; prints seconds, RSS growth and path bytes."""
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
  from preprocess.job import build  # pylint: disable=import-outside-toplevel
  from preprocess.inputs import indexing  # pylint: disable=import-outside-toplevel
  from preprocess.job import runners  # pylint: disable=import-outside-toplevel
  from preprocess.job import output_folder  # pylint: disable=import-outside-toplevel
  indexing.LAUNCHER_MAX_BYTES = 0  # index as ImageNet is: by the job's workers
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  options = build.BuildOptions(input_dir, input_dir + "_out")
  indexer = indexing.ArchiveIndexer(os.path.join(input_dir + "_out", output_folder.INDEX_NAME),
                                    PipelineOptions(runners.with_default_runner([])), 3600)
  start = time.perf_counter()
  _, _, plans, _ = build.plan_input(options, indexer)
  seconds = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  indexer.remove()
  paths = sum(sys.getsizeof(p) for plan in plans for p in plan.candidates)
  print(
      json.dumps({
          "seconds": seconds, "rss_growth": (after - before) * 1024, "path_bytes": paths,
          "images": sum(len(plan.candidates) for plan in plans)
      }))


def main(argv):
  del argv
  if FLAGS.child:
    plan_here(FLAGS.child)
    return
  rows = []
  for per_class in map(int, FLAGS.per_class):
    root = os.path.join(FLAGS.work_dir, f"c{per_class}")
    forms = ((os.path.join(root, "extracted"), os.path.join(root, "archived"))
             if os.path.isdir(root) else make_tree(root, per_class, FLAGS.val_per_class))
    for form in forms:
      out = subprocess.run([sys.executable, "-m", "benchmarks.bench_planning", f"--child={form}"],
                           capture_output=True, text=True, check=True).stdout
      result = json.loads(out.strip().splitlines()[-1])
      rows.append((os.path.basename(form), per_class * _CLASSES, result))
  print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared: timings "
        "are indicative)")
  for form, train, r in rows:
    print(f"{form:9s} {r['images']:7d} images: planning {r['seconds']:6.1f} s, peak RSS +"
          f"{r['rss_growth'] / 2**20:6.0f} MiB, path list {r['path_bytes'] / 2**20:5.1f} MiB")
  # A fixed cost (the indexing job's start-up) hides in a ratio; the slope between sizes does not.
  for form in ("extracted", "archived"):
    (_, small, a), *_, (_, large, b) = [row for row in rows if row[0] == form]
    if large == small:
      continue

    def extrapolate(key, a=a, b=b, small=small, large=large):
      return a[key] + (b[key] - a[key]) / (large - small) * (_IMAGENET_TRAIN - small)

    print(
        f"{form:9s} extrapolated to {_IMAGENET_TRAIN} training images: planning "
        f"~{extrapolate('seconds'):.0f} s, peak RSS +{extrapolate('rss_growth') / 2**30:.2f} GiB, "
        f"path list {extrapolate('path_bytes') / 2**30:.2f} GiB")


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_list("per_class", ["20", "40"], "Training images per class, one tree per value.")
  flags.DEFINE_integer("val_per_class", 10,
                       "Validation images per class (flat, with ground truth).")
  flags.DEFINE_string("work_dir", "bench_out/planning", "Scratch folder.")
  flags.DEFINE_string("child", None, "Internal: plan this input in this process and print JSON.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
