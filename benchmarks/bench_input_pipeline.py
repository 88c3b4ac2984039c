"""Images/s of the training input pipeline and of the training step, measured in one run.

  python -m benchmarks.bench_input_pipeline [--shards DIR] [--seconds 15] [--jpeg_subsampling 4:2:0]

Prints (a) TensorFlow's decode alone (parse + decode_jpeg, parallel map, batch), (b) the full
training input pipeline of `train.input_pipeline.make_dataset` without a model, (c) the training
step of the paper's network (groups=2) on in-memory batches, and (d) the same step fed by the real
pipeline, with the ratios b/a (target >= 0.9) and d/c (target >= 0.95). Without --shards it first
writes a synthetic dataset of 256x256 JPEGs cut from scikit-image's photographs, with stage 1's
quality and, unless --jpeg_subsampling says otherwise, its default chroma subsampling.
"""

from common import dataset as dataset_lib
from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import io
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from PIL import Image
from skimage import data as skimage_data

from common import image as image_lib
from common import manifest as manifest_lib
from common import schema
from preprocess.conversion import convert
from train import config as config_lib
from train import input_pipeline
from train import model as model_lib
from train import preparation
from train.run import schedule
from train.run import train

FLAGS = flags.FLAGS

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def write_synthetic_dataset(directory, num_images, num_shards=8, seed=0,
                            subsampling=convert.JPEG_SUBSAMPLING):
  """Writes `num_images` random 256x256 crops of photographs as a JPEG dataset with a manifest."""
  rng = np.random.default_rng(seed)
  photos = [Image.fromarray(getattr(skimage_data, name)()).convert("RGB") for name in PHOTOS]
  size = schema.IMAGE_SIZE
  shards, pixel_sum = [], np.zeros((size, size, 3))
  writers = [
      tf.io.TFRecordWriter(os.path.join(directory, f"train-{i:05d}.tfrecord"))
      for i in range(num_shards)
  ]
  for index in range(num_images):
    label = index % len(photos)
    photo = photos[label]
    side = int(rng.integers(min(photo.size) // 2, min(photo.size) + 1))
    left = int(rng.integers(0, photo.size[0] - side + 1))
    top = int(rng.integers(0, photo.size[1] - side + 1))
    crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    pixel_sum += np.asarray(crop)
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=95, subsampling=subsampling)
    writers[index % num_shards].write(
        schema.make_example(encoded=buffer.getvalue(), image_format=schema.FORMAT_JPEG, label=label,
                            synset=f"n{label:08d}", filename=f"{index}.JPEG", original_height=side,
                            original_width=side))
  for i, writer in enumerate(writers):
    writer.close()
    name = f"train-{i:05d}.tfrecord"
    # No hash: the benchmark loads with verify="size".
    shards.append(
        manifest_lib.make_shard(name, len(range(i, num_images, num_shards)),
                                os.path.getsize(os.path.join(directory, name)), ""))
  mean_image = (pixel_sum / num_images).astype(np.float32)
  np.save(os.path.join(directory, manifest_lib.MEAN_NAME), mean_image)
  synsets = [f"n{i:08d}" for i in range(len(PHOTOS))]
  manifest = manifest_lib.make_manifest(
      image_size=size,
      encoding=schema.FORMAT_JPEG,
      synsets=synsets,
      names=dict(zip(synsets, PHOTOS)),
      splits={
          "train":
              manifest_lib.make_split(
                  shards, {w: len(range(i, num_images, len(PHOTOS))) for i, w in enumerate(synsets)})
      },
      # Only the shapes of the colour statistics matter to a speed measurement.
      stats={
          "mean_file": manifest_lib.MEAN_NAME, "num_images": num_images,
          "channel_mean": mean_image.mean(axis=(0, 1)).tolist(),
          "rgb_covariance": np.diag([4000.0, 300.0, 60.0]).tolist(),
          "rgb_eigval": [4000.0, 300.0, 60.0], "rgb_eigvec": np.eye(3).tolist()
      })
  with open(os.path.join(directory, manifest_lib.MANIFEST_NAME), "w") as f:
    f.write(manifest_lib.dumps(manifest))
  return directory


def images_per_second(batches, seconds):
  """Pulls batches (dicts with `label`, or any callable's output) for `seconds` after a warm-up."""
  iterator = iter(batches)
  for _ in range(2):
    next(iterator)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    count += int(np.asarray(next(iterator)))
  return count / (time.perf_counter() - start)


def decode_only(manifest, batch_size):
  """(a): the shards' records parsed and fully decoded, nothing else.

  Decoded by `common.image.decode_image`, with the pipeline's settings (the accurate IDCT): a
  baseline must not differ from what it is compared with.
  """
  decode = lambda r: image_lib.decode_image(  # noqa: E731
      schema.parse_example(r), manifest.encoding, image_size=manifest.image_size)
  return (tf.data.Dataset.from_tensor_slices(manifest.shard_paths("train")).repeat().interleave(
      tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).map(
          decode, num_parallel_calls=tf.data.AUTOTUNE,
          deterministic=False).batch(batch_size).map(lambda images: tf.shape(images)[0]).prefetch(
              tf.data.AUTOTUNE))


def make_train_fn(manifest, batch_size):
  """The trainer's step (prepare_batch + train_step) for the paper's network, 1000 classes."""
  config = config_lib.Config(batch_size=batch_size)
  model = model_lib.alexnet(1000, groups=2)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)

  @tf.function
  def train_fn(batch):
    return train.train_step(model, optimizer, batch, prep, config, state["rng"])[3]

  return train_fn


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as scratch:
    shards = FLAGS.shards or write_synthetic_dataset(scratch, FLAGS.num_images,
                                                     subsampling=FLAGS.jpeg_subsampling)
    manifest = dataset_lib.load(shards)
    seconds = FLAGS.seconds
    pipeline = lambda batch_size: input_pipeline.make_dataset(  # noqa: E731
        manifest,
        input_pipeline.Stream("train", batch_size=batch_size, training=True, shuffle_buffer=1000))
    decode_rate = images_per_second(decode_only(manifest, FLAGS.pipeline_batch_size), seconds)
    pipeline_rate = images_per_second(
        (tf.size(b["label"]) for b in pipeline(FLAGS.pipeline_batch_size)), seconds)
    train_fn = make_train_fn(manifest, FLAGS.step_batch_size)
    in_memory = next(iter(pipeline(FLAGS.step_batch_size)))
    synthetic_rate = images_per_second((train_fn(in_memory) for _ in iter(int, 1)), seconds)
    fed_rate = images_per_second((train_fn(b) for b in pipeline(FLAGS.step_batch_size)), seconds)
  cores = os.cpu_count()
  logging.info("CPU cores: %d (the machine may be shared with other processes)", cores)
  logging.info("(a) decode only:                 %8.1f images/s", decode_rate)
  logging.info("(b) training input pipeline:     %8.1f images/s  b/a = %.2f (target >= 0.9)",
               pipeline_rate, pipeline_rate / decode_rate)
  logging.info("(c) train step, in-memory batch: %8.1f images/s", synthetic_rate)
  logging.info("(d) train step fed by (b):       %8.1f images/s  d/c = %.2f (target >= 0.95)",
               fed_rate, fed_rate / synthetic_rate)
  logging.info(
      "On a GPU the step is fast and (b) bounds training: %.0f images/s needs about %.1f "
      "such cores", FLAGS.gpu_images_per_sec, FLAGS.gpu_images_per_sec / (pipeline_rate / cores))


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_string("shards", None, "A dataset directory; default: write a synthetic one.")
  flags.DEFINE_integer("num_images", 3000, "Images in the synthetic dataset.", lower_bound=1)
  flags.DEFINE_enum("jpeg_subsampling", convert.JPEG_SUBSAMPLING, list(convert.JPEG_SUBSAMPLINGS),
                    "Chroma subsampling of the synthetic dataset's JPEGs.")
  flags.DEFINE_integer("pipeline_batch_size", 128, "Batch size of measurements (a) and (b).",
                       lower_bound=1)
  flags.DEFINE_integer("step_batch_size", 32, "Batch size of measurements (c) and (d).",
                       lower_bound=1)
  flags.DEFINE_float("seconds", 15.0, "Seconds per measurement, after a warm-up.", lower_bound=0)
  flags.DEFINE_float("gpu_images_per_sec", 3000.0,
                     "A GPU's AlexNet training rate, to size the CPU cores it needs.",
                     lower_bound=0)


if __name__ == "__main__":
  define_flags()
  app.run(main)
