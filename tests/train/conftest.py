"""A tiny synthetic dataset written straight through the data contract, for the trainer's tests.

Each class is a flat colour with pixel noise, so a narrow AlexNet learns it in a few steps. The
records, shards, mean image and manifest follow `common/schema.py` and `common/manifest.py`, so the
tests do not depend on the preprocessing job.
"""

import hashlib
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import manifest as manifest_lib
from common import schema
from train import config as config_lib
from train.run import train

CLASS_COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))
# A narrow network and tiny batches: 18 training images give 4 steps per epoch.
TINY_CONFIG = dict(width=0.0625, batch_size=4, epochs=1, log_every=1, checkpoint_every=100,
                   shuffle_buffer=8, seed=0)


def _jpeg(pixels):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def _write_shard(path, examples):
  """Writes one TFRecord file and returns its bytes (for the manifest's size and hash)."""
  with tf.io.TFRecordWriter(path) as writer:
    for serialized in examples:
      writer.write(serialized)
  with open(path, "rb") as f:
    return f.read()


def write_dataset(directory, train_per_class=6, validation_per_class=3, train_shards=2, seed=0,
                  validation_shards=1):
  """Writes shards, `mean.npy` and `manifest.json` for `len(CLASS_COLOURS)` classes.

  Args:
    directory: output directory (created).
    train_per_class: training images per class.
    validation_per_class: validation images per class.
    train_shards: number of training shards.
    seed: NumPy seed of the pixel noise.
    validation_shards: number of validation shards.

  Returns:
    The directory.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  size = schema.IMAGE_SIZE
  synsets = [f"n0000000{i}" for i in range(len(CLASS_COLOURS))]
  splits, train_pixels = {}, []
  for split, per_class, num_shards in (("train", train_per_class, train_shards),
                                       ("validation", validation_per_class, validation_shards)):
    examples = []
    for index in range(per_class):
      for label, colour in enumerate(CLASS_COLOURS):
        noise = rng.normal(0, 25, (size, size, 3))
        pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
        if split == "train":
          train_pixels.append(pixels.astype(np.float64))
        examples.append(schema.make_example(
            encoded=_jpeg(pixels), image_format=schema.FORMAT_JPEG, label=label,
            synset=synsets[label], filename=f"{split}/{label}/{index}.JPEG",
            original_height=300, original_width=400))
    shards = []
    for shard in range(num_shards):
      name = f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"
      data = _write_shard(os.path.join(directory, name), examples[shard::num_shards])
      shards.append(manifest_lib.make_shard(name, len(examples[shard::num_shards]), len(data),
                                            hashlib.sha256(data).hexdigest()))
    splits[split] = manifest_lib.make_split(shards, {w: per_class for w in synsets})
  stacked = np.stack(train_pixels)
  mean_image = stacked.mean(axis=0).astype(np.float32)
  np.save(os.path.join(directory, manifest_lib.MEAN_NAME), mean_image)
  flat = stacked.reshape(-1, 3)
  covariance = np.cov(flat, rowvar=False)
  eigval, eigvec = np.linalg.eigh(covariance)
  order = np.argsort(eigval)[::-1]
  manifest = manifest_lib.make_manifest(
      image_size=size, encoding=schema.FORMAT_JPEG, synsets=synsets,
      names={w: f"colour {i}" for i, w in enumerate(synsets)}, splits=splits,
      stats={"mean_file": manifest_lib.MEAN_NAME, "num_images": len(stacked),
             "channel_mean": flat.mean(axis=0).tolist(), "rgb_covariance": covariance.tolist(),
             "rgb_eigval": eigval[order].tolist(), "rgb_eigvec": eigvec[:, order].tolist()})
  with open(os.path.join(directory, manifest_lib.MANIFEST_NAME), "w") as f:
    f.write(manifest_lib.dumps(manifest))
  return directory


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory):
  """A read-only tiny dataset shared by every test that does not damage it."""
  return write_dataset(str(tmp_path_factory.mktemp("shards")))


@pytest.fixture
def writable_dataset_dir(tmp_path):
  """A fresh copy for tests that truncate or otherwise damage the shards."""
  return write_dataset(str(tmp_path / "shards"))


@pytest.fixture(scope="session")
def trained_dir(dataset_dir, tmp_path_factory):
  """One epoch (4 steps) of training, shared read-only; tests that alter it work on a copy."""
  model_dir = str(tmp_path_factory.mktemp("trained") / "model")
  train.train_and_evaluate(config_lib.Config(**TINY_CONFIG), manifest_lib.load(dataset_dir),
                           model_dir)
  return model_dir
