r"""Stage-1 speed and memory: the per-image conversion alone vs the whole Beam job on every core.

  python -m benchmarks.bench_preprocess [--num_images 3000] [--scale 4] [--work_dir DIR]
      [--jpeg_subsampling 4:4:4|4:2:0]

  make bench                                                          # 4:4:4, stage 1's default
  python -m benchmarks.bench_preprocess --jpeg_subsampling 4:2:0      # the smaller, 4:2:0 records

Builds ImageNet-like JPEGs (mostly around 500x375, a tail of large ones), then times
  (a0) the loop a user writes first: one process, Pillow's defaults (full decode, bicubic resize,
       crop, encode at quality 95, which Pillow does 4:2:0), no statistics. It is the comparison a
       user makes, so it does not change with our defaults or `--jpeg_subsampling`: the job's
       marginal rate against it is the 1.7x target;
  (a)  `convert_image` over every file in a bare single-process loop (read + convert, at
       `--jpeg_subsampling`): how much of the job's time is the conversion itself;
  (a0) and (a) run once before and once after the builds, and their means are used, so that a
       machine whose load changes during the run (a shared host) moves the loops and the job alike;
  (b)  `python -m preprocess.build_shards` with its default runner (one worker process per core),
       wall-clock from launch to exit, start-up included;
  (c)  the same, on the same images as the ILSVRC release ships them: a tar of per-class tars, read
       in place (the base size is indexed by the launcher, the larger one by the indexing job);
each on the base input and on one `--scale` times larger (the same files hard-linked under `--scale`
names each, so it costs nothing to make), (b) and (c) alternating so that a machine whose speed
drifts (a shared host) moves both alike. It prints images/s, the peak memory (RSS summed over the
job's process tree) and, for (c), the time indexing took.

The job pays a fixed start-up (starting Beam's workers, planning, writing the manifest) that a few
thousand images cannot hide but 1.28M images can, so besides the end-to-end rate it prints the
marginal rate, (N_large - N_base) / (T_large - T_base), the throughput of the part of the job that
grows with the input, and the start-up that remains.
Run by hand; not part of the tests.
"""

import io
import os
import re
import subprocess
import sys
import time

import numpy as np
import psutil
from absl import app
from absl import flags
from PIL import Image
from skimage import data as skimage_data

from preprocess.conversion import convert
from tests.preprocess import archive_fixtures

FLAGS = flags.FLAGS

_CLASSES = 10
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "horse", "moon", "page",
           "text")


def make_inputs(root, count, seed=0):
  """Writes `count` JPEGs under root/train/<wnid>/; 5% are large (1600-3000 px on the long side)."""
  rng = np.random.default_rng(seed)
  photos = [Image.fromarray(getattr(skimage_data, name)()).convert("RGB") for name in _PHOTOS]
  for index in range(count):
    photo = photos[index % _CLASSES]
    if rng.random() < 0.05:
      long_side = int(rng.integers(1600, 3001))
      size = (long_side, long_side * 3 // 4)
    else:
      size = (int(rng.integers(400, 501)), int(rng.integers(300, 376)))
    image = photo.resize(size, Image.Resampling.BILINEAR)
    noise = rng.integers(-12, 13, (size[1], size[0], 3))
    pixels = np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
    path = os.path.join(root, "train", f"n{index % _CLASSES:08d}", f"img_{index}.JPEG")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    with open(path, "wb") as f:
      f.write(buffer.getvalue())


def link_copies(base, root, copies):
  """root: every file of base `copies` times under new names, as hard links.

  Each copy costs exactly what its original does to convert, and generating the larger input costs
  nothing, which keeps `make bench` within a few minutes.
  """
  for folder, _, files in os.walk(base):
    target = os.path.join(root, os.path.relpath(folder, base))
    os.makedirs(target, exist_ok=True)
    for name in files:
      for copy in range(copies):
        os.link(os.path.join(folder, name), os.path.join(target, f"c{copy}_{name}"))


def time_conversion(root):
  """(a): images/s of read + convert_image over every file, one process."""
  paths = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
  start = time.perf_counter()
  for path in paths:
    with open(path, "rb") as f:
      convert.convert_image(f.read(), subsampling=FLAGS.jpeg_subsampling)
  return len(paths) / (time.perf_counter() - start)


def pack_archive(root, archive_dir):
  """(c)'s input: root/train/<wnid>/* as archive_dir/train.tar of <wnid>.tar, as ILSVRC ships it,
  packed as the tests pack it (each file's own bytes, so hard-linked copies are not links)."""
  os.makedirs(archive_dir)
  archive_fixtures.pack_train_tar(root, os.path.join(archive_dir, "train.tar"))


def time_build(root, output_dir):
  """(b): wall seconds of the whole job and its peak RSS over the process tree, in bytes."""
  command = [
      sys.executable, "-m", "preprocess.build_shards", "--input_dir", root, "--output_dir",
      output_dir, "--overwrite", "--progress_seconds=3600",
      f"--jpeg_subsampling={FLAGS.jpeg_subsampling}"
  ]
  start = time.perf_counter()
  job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  parent, peak = psutil.Process(job.pid), 0
  while job.poll() is None:
    rss = 0
    for process in [parent] + parent.children(recursive=True):
      try:
        rss += process.memory_info().rss
      except psutil.Error:
        pass
    peak = max(peak, rss)
    time.sleep(0.2)
  elapsed = time.perf_counter() - start
  log = job.stderr.read().decode()
  if job.returncode:
    raise RuntimeError(f"build_shards failed: {log[-2000:]}")
  indexing = re.search(r"indexed \d+ archive units of .* in ([\d.]+) s", log)
  return elapsed, peak, float(indexing.group(1)) if indexing else None


def time_naive(root):
  """(a0): images/s of the loop a user writes first: full decode, resize, crop, encode; no draft."""
  paths = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
  start = time.perf_counter()
  for path in paths:
    with Image.open(path) as source:
      image = source.convert("RGB")
    scale = 256 / min(image.size)
    width, height = max(256, round(image.width * scale)), max(256, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - 256) // 2, (height - 256) // 2
    image.crop((left, top, left + 256, top + 256)).save(io.BytesIO(), "JPEG", quality=95)
  return len(paths) / (time.perf_counter() - start)


def main(argv):
  del argv
  small_count, large_count = FLAGS.num_images, FLAGS.num_images * FLAGS.scale
  base = os.path.join(FLAGS.work_dir, f"in_{small_count}")
  large = os.path.join(FLAGS.work_dir, f"in_{small_count}x{FLAGS.scale}")
  if not os.path.isdir(base):
    make_inputs(base, small_count)
  if not os.path.isdir(large):
    link_copies(base, large, FLAGS.scale)
  for root in (base, large):
    if not os.path.isdir(root + "_archived"):
      pack_archive(root, root + "_archived")
  load = os.getloadavg()[0]
  naive_before = time_naive(base)
  before = time_conversion(base)
  runs = {}
  for count, root in ((small_count, base), (large_count, large)):
    for form, suffix in (("extracted", ""), ("archived", "_archived")):
      runs[form, count] = time_build(root + suffix, os.path.join(FLAGS.work_dir, "out"))
  after = time_conversion(base)
  naive_after = time_naive(base)
  converted, naive = (before + after) / 2, (naive_before + naive_after) / 2
  print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"load average {load:.1f} before the run and {os.getloadavg()[0]:.1f} after it; "
        f"--jpeg_subsampling {FLAGS.jpeg_subsampling}")
  print(f"(a0) naive Pillow loop, one process:        {naive:8.1f} images/s (mean of "
        f"{naive_before:.1f} before and {naive_after:.1f} after; no draft, no stats)")
  print(f"(a)  convert_image, one process:            {converted:8.1f} images/s (mean of "
        f"{before:.1f} before and {after:.1f} after the builds)")
  marginal = {}
  for form, letter in (("extracted", "b"), ("archived", "c")):
    (small_seconds, small_peak, _), (large_seconds, large_peak, _) = (runs[form, small_count],
                                                                      runs[form, large_count])
    marginal[form] = (large_count - small_count) / (large_seconds - small_seconds)
    print(f"({letter})  build_shards, {form} input, default runner, end to end:")
    for count, (seconds, peak, indexing) in ((small_count, runs[form, small_count]),
                                             (large_count, runs[form, large_count])):
      index_note = f", indexing {indexing:.1f} s" if indexing is not None else ""
      print(f"      {count:7d} images: {count / seconds:8.1f} images/s ({seconds:.1f} s"
            f"{index_note}), peak RSS {peak / 2**20:.0f} MiB")
    startup = small_seconds - small_count / marginal[form]
    print(f"      marginal rate: {marginal[form]:8.1f} images/s, fixed start-up {startup:.1f} s; "
          f"peak RSS {large_peak / small_peak - 1:+.0%} at {FLAGS.scale}x the images "
          "(target within 20%)")
  print(f"ratio (b) marginal / (a0): {marginal['extracted'] / naive:5.2f}  (target >= 1.7)")
  print(f"ratio (b) marginal / (a):  {marginal['extracted'] / converted:5.2f}  (the job's use of "
        f"{os.cpu_count()} cores for one core's conversion)")
  for count in (small_count, large_count):
    ratio = runs["extracted", count][0] / runs["archived", count][0]
    print(f"ratio (c) / (b) end to end, {count:7d} images: {ratio:5.2f}  (goal >= 0.95)")
  archived_marginal = marginal["archived"] / marginal["extracted"]
  print(f"ratio (c) / (b) marginal:               {archived_marginal:5.2f}")


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_integer("num_images", 3000, "Images in the base input.")
  flags.DEFINE_integer("scale", 4, "The larger input is this many times the base (hard links).")
  flags.DEFINE_string("work_dir", "bench_out", "Scratch folder for inputs and outputs.")
  flags.DEFINE_enum(
      "jpeg_subsampling", convert.JPEG_SUBSAMPLING, list(convert.JPEG_SUBSAMPLINGS),
      "Chroma subsampling of the job's stored JPEGs and of (a); (a0) always encodes "
      "with Pillow's default. Run once with each: 4:4:4 is stage 1's default.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
