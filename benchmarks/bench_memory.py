r"""Stage-1 peak memory at ImageNet's file count, without its pixels.

  python -m benchmarks.bench_memory [--num_files 1281000] [--classes 1000] [--valid_every 0]
                                    [--form tree|tar|zip] [--work_dir DIR]

Builds a training tree of `--num_files` files in `--classes` class folders: empty files (skipped as
`empty`), except every `--valid_every`-th, which is a hard link to one tiny valid JPEG (so the
written part costs one small decode each, and the tree costs no disk). `--form=tar` packs the same
files as ILSVRC-2012's training tar of class tars, `--form=zip` as Kaggle's zip (stored, with a
50,000-image flat validation folder and its `LOC_val_solution.csv`, as Kaggle ships it). Then runs
`python -m preprocess.build_shards` with its default runner and samples, every 0.1 s, the resident
memory (RSS) of the launcher and the sum over the launcher and all its descendants. An input that is
mostly skipped fails the skip guard, as it should; the memory of the run up to that point is what is
measured. Run by hand; not part of the tests.
"""

import io
import os
import subprocess
import sys
import time
import zipfile

import psutil
from absl import app
from absl import flags
from PIL import Image

from tests.preprocess import archive_fixtures

FLAGS = flags.FLAGS


def make_tree(root, num_files, classes, valid_every):
  """Writes the tree once; returns how many of its files are valid JPEGs."""
  tiny = os.path.join(root, "tiny.jpg")
  os.makedirs(root, exist_ok=True)
  buffer = io.BytesIO()
  Image.new("RGB", (8, 6), (120, 60, 30)).save(buffer, "JPEG")
  with open(tiny, "wb") as f:
    f.write(buffer.getvalue())
  valid = 0
  for index in range(num_files):
    wnid = f"n{index % classes:08d}"
    folder = os.path.join(root, "train", wnid)
    if index < classes:
      os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{wnid}_{index}.JPEG")
    if valid_every and index % valid_every == 0:
      os.link(tiny, path)
      valid += 1
    else:
      open(path, "wb").close()
  return valid


def pack(root, form):
  """The tree under root as ILSVRC-2012's training tar or Kaggle's zip, in root + "_" + form."""
  out = f"{root}_{form}"
  if os.path.isdir(out):
    return out
  os.makedirs(out)
  wnids = sorted(os.listdir(os.path.join(root, "train")))
  if form == "tar":
    archive_fixtures.pack_train_tar(root, os.path.join(out, "ILSVRC2012_img_train.tar"))
    return out
  prefix = "ILSVRC/Data/CLS-LOC/"
  with zipfile.ZipFile(os.path.join(out, "imagenet-object-localization-challenge.zip"), "w") as z:
    for wnid in wnids:
      for name in sorted(os.listdir(os.path.join(root, "train", wnid))):
        z.write(os.path.join(root, "train", wnid, name), f"{prefix}train/{wnid}/{name}")
    rows = []
    for number in range(1, 50_001):
      image = f"ILSVRC2012_val_{number:08d}"
      z.writestr(f"{prefix}val/{image}.JPEG", b"")
      rows.append(f"{image},{wnids[number % len(wnids)]} 0 0 1 1")
    z.writestr("LOC_val_solution.csv", "ImageId,PredictionString\n" + "\n".join(rows) + "\n")
  return out


def tree_rss(process):
  """(RSS of the process, RSS summed over it and every descendant), in bytes; 0 for gone ones."""
  total, own = 0, 0
  try:
    own = process.memory_info().rss
    total = own + sum(_rss(child) for child in process.children(recursive=True))
  except psutil.NoSuchProcess:
    pass
  return own, total


def _rss(process):
  try:
    return process.memory_info().rss
  except psutil.NoSuchProcess:
    return 0


def main(argv):
  del argv
  root = os.path.join(FLAGS.work_dir, f"f{FLAGS.num_files}_c{FLAGS.classes}_v{FLAGS.valid_every}")
  if not os.path.isdir(os.path.join(root, "train")):
    start = time.time()
    valid = make_tree(root, FLAGS.num_files, FLAGS.classes, FLAGS.valid_every)
    print(f"made {FLAGS.num_files} files ({valid} valid) in {time.time() - start:.0f} s")
  if FLAGS.form != "tree":
    start = time.time()
    root = pack(root, FLAGS.form)
    print(f"packed them as a {FLAGS.form} in {time.time() - start:.0f} s")
  output_dir = os.path.join(FLAGS.work_dir, "out")
  command = [
      sys.executable, "-m", "preprocess.build_shards", f"--input_dir={root}",
      f"--output_dir={output_dir}", "--overwrite", "--progress_seconds=3600"
  ]
  start = time.time()
  with open(os.path.join(FLAGS.work_dir, "build.log"), "wb") as log:
    job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    launcher = psutil.Process(job.pid)
    peak_launcher = peak_tree = 0
    while job.poll() is None:
      own, total = tree_rss(launcher)
      peak_launcher, peak_tree = max(peak_launcher, own), max(peak_tree, total)
      time.sleep(0.1)
  elapsed = time.time() - start
  print(
      f"{FLAGS.num_files} files ({FLAGS.form}): exit {job.returncode} after {elapsed:.1f} s; peak RSS "
      f"launcher {peak_launcher / 2**30:.2f} GiB, process tree {peak_tree / 2**30:.2f} GiB "
      f"(log: {log.name})")


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_integer("num_files", 1_281_000, "Files in the training tree.", lower_bound=1)
  flags.DEFINE_integer("classes", 1000, "Class folders.", lower_bound=1)
  flags.DEFINE_integer("valid_every", 0, "Every n-th file is a tiny valid JPEG (0: none).",
                       lower_bound=0)
  flags.DEFINE_enum("form", "tree", ["tree", "tar", "zip"],
                    "The input as extracted, as the ILSVRC training tar, or as Kaggle's zip.")
  flags.DEFINE_string("work_dir", "/tmp/bench_memory", "Scratch folder (the tree is reused).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
