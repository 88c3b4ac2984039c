r"""Stage-1 speed and memory: the per-image conversion alone vs the whole Beam job on every core.

  python -m benchmarks.bench_preprocess [--num_images 3000] [--scale 4] [--work_dir DIR]

Builds ImageNet-like JPEGs (mostly around 500x375, a tail of large ones), then times
  (a) `convert_image` over every file in a bare single-process loop (read + convert), and
  (b) `python -m preprocess.build_shards` with its default runner (one worker process per core),
      wall-clock from launch to exit, start-up included,
and prints images/s for both and their ratio, and the peak memory (RSS summed over the job's process
tree), for the input and for an input `--scale` times larger (the same files hard-linked under
`--scale` names each, so it costs nothing to make). Then (c) the same base images as the
ILSVRC release ships them, a tar of per-class tars, read in place: images/s against (b), peak memory,
and the time indexing the archive took.

The job pays a fixed start-up (importing TensorFlow and Beam in the launcher and in each worker,
planning, writing the manifest) that a few thousand images cannot hide but 1.26M images can, so
besides the end-to-end rate it prints the marginal rate, (N_large - N_base) / (T_large - T_base), the
throughput of the part of the job that grows with the input, and the start-up that remains.
Run by hand; not part of the tests.
"""

import io
import os
import re
import subprocess
import sys
import tarfile
import time

import numpy as np
import psutil
from absl import app
from absl import flags
from PIL import Image
from skimage import data as skimage_data

from preprocess import convert

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
      convert.convert_image(f.read())
  return len(paths) / (time.perf_counter() - start)


def pack_archive(root, archive_dir):
  """(c)'s input: root/train/<wnid>/* as archive_dir/train.tar of <wnid>.tar, as ILSVRC ships it."""
  os.makedirs(archive_dir)
  with tarfile.open(os.path.join(archive_dir, "train.tar"), "w") as outer:
    for wnid in sorted(os.listdir(os.path.join(root, "train"))):
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w") as tar:
        for name in sorted(os.listdir(os.path.join(root, "train", wnid))):
          tar.add(os.path.join(root, "train", wnid, name), arcname=name)
      info = tarfile.TarInfo(f"{wnid}.tar")
      info.size = inner.tell()
      inner.seek(0)
      outer.addfile(info, inner)


def time_build(root, output_dir):
  """(b): wall seconds of the whole job and its peak RSS over the process tree, in bytes."""
  command = [sys.executable, "-m", "preprocess.build_shards", "--input_dir", root, "--output_dir",
             output_dir, "--overwrite", "--progress_seconds=3600"]
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


def main(argv):
  del argv
  base = os.path.join(FLAGS.work_dir, f"in_{FLAGS.num_images}")
  large = os.path.join(FLAGS.work_dir, f"in_{FLAGS.num_images * FLAGS.scale}")
  if not os.path.isdir(base):
    make_inputs(base, FLAGS.num_images)
  if not os.path.isdir(large):
    link_copies(base, large, FLAGS.scale)
  converted = time_conversion(base)
  small_count, large_count = FLAGS.num_images, FLAGS.num_images * FLAGS.scale
  small_seconds, peak, _ = time_build(base, os.path.join(FLAGS.work_dir, "out"))
  large_seconds, peak_large, _ = time_build(large, os.path.join(FLAGS.work_dir, "out_large"))
  archived = base + "_archived"
  if not os.path.isdir(archived):
    pack_archive(base, archived)
  archive_seconds, peak_archive, indexing = time_build(archived,
                                                       os.path.join(FLAGS.work_dir, "out_archived"))
  marginal = (large_count - small_count) / (large_seconds - small_seconds)
  startup = small_seconds - small_count / marginal
  print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"load average before the run {os.getloadavg()[0]:.1f}")
  print(f"(a) convert_image, one process:            {converted:8.1f} images/s")
  print("(b) build_shards, default runner, end to end:")
  print(f"      {small_count:7d} images:                    {small_count / small_seconds:8.1f} "
        f"images/s  ({small_seconds:.1f} s)")
  print(f"      {large_count:7d} images:                    {large_count / large_seconds:8.1f} "
        f"images/s  ({large_seconds:.1f} s)")
  print(f"    marginal rate:                         {marginal:8.1f} images/s, fixed start-up "
        f"{startup:.1f} s")
  print(f"    ratio marginal (b) / (a):              {marginal / converted:8.2f}  (target >= 1.7)")
  print(f"    peak RSS, {small_count:7d} images:          {peak / 2**20:8.0f} MiB")
  print(f"    peak RSS, {large_count:7d} images:          {peak_large / 2**20:8.0f} MiB  "
        f"({peak_large / peak - 1:+.0%}, target within 20%)")
  print(f"(c) build_shards on the archive form, {small_count} images: "
        f"{small_count / archive_seconds:8.1f} images/s ({archive_seconds:.1f} s, indexing "
        f"{indexing:.1f} s), {small_seconds / archive_seconds:.2f}x extracted (goal >= 0.95), "
        f"peak RSS {peak_archive / 2**20:.0f} MiB")


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_integer("num_images", 3000, "Images in the base input.")
  flags.DEFINE_integer("scale", 4, "The memory check's larger input is this many times the base.")
  flags.DEFINE_string("work_dir", "bench_out", "Scratch folder for inputs and outputs.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
