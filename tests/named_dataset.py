"""A dataset of any classes and file names, written straight through the data contract.

For tests that need what `tests/train/conftest.py`'s three-colour dataset lacks: 1,000 WNIDs, or
validation files named `ILSVRC2012_val_*.JPEG`, or more than ten classes. Each image is a flat
colour chosen by its label, with pixel noise.
"""

import hashlib
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from common import manifest as manifest_lib
from common import schema


def class_colour(label):
  """A colour of its own for each of up to 1,000 labels (10 levels per channel)."""
  return np.array([25 * (label % 10), 25 * (label // 10 % 10), 25 * (label // 100 % 10)]) + 20


def jpeg(pixels, quality=90):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def class_pixels(label, rng, size=schema.IMAGE_SIZE):
  noise = rng.normal(0, 20, (size, size, 3))
  return np.clip(class_colour(label) + noise, 0, 255).astype(np.uint8)


def write_dataset(directory, synsets, splits, num_shards=None, seed=0):
  """Writes shards, `mean.npy` and `manifest.json`.

  Args:
    directory: output directory (created).
    synsets: sorted WNIDs.
    splits: {split: [(filename, label)]}, the records of each split in order.
    num_shards: {split: shards} (records dealt round-robin); default one shard per split.
    seed: NumPy seed of the pixel noise.

  Returns:
    The directory.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  made, train_pixels = {}, []
  for split, records in splits.items():
    count = (num_shards or {}).get(split, 1)
    shards, counts = [], {}
    examples = []
    for filename, label in records:
      pixels = class_pixels(label, rng)
      if split == "train":
        train_pixels.append(pixels.astype(np.float64))
      examples.append(schema.make_example(
          encoded=jpeg(pixels), image_format=schema.FORMAT_JPEG, label=label,
          synset=synsets[label], filename=filename, original_height=300, original_width=400))
      counts[synsets[label]] = counts.get(synsets[label], 0) + 1
    for shard in range(count):
      name = f"{split}-{shard:05d}-of-{count:05d}.tfrecord"
      path = os.path.join(directory, name)
      with tf.io.TFRecordWriter(path) as writer:
        for serialized in examples[shard::count]:
          writer.write(serialized)
      with open(path, "rb") as f:
        data = f.read()
      shards.append(manifest_lib.make_shard(name, len(examples[shard::count]), len(data),
                                            hashlib.sha256(data).hexdigest()))
    made[split] = manifest_lib.make_split(shards, counts)
  stacked = np.stack(train_pixels)
  np.save(os.path.join(directory, manifest_lib.MEAN_NAME), stacked.mean(axis=0).astype(np.float32))
  flat = stacked.reshape(-1, 3)
  covariance = np.cov(flat, rowvar=False)
  eigval, eigvec = np.linalg.eigh(covariance)
  order = np.argsort(eigval)[::-1]
  manifest = manifest_lib.make_manifest(
      image_size=schema.IMAGE_SIZE, encoding=schema.FORMAT_JPEG, synsets=synsets,
      names={w: f"class {i}" for i, w in enumerate(synsets)}, splits=made,
      stats={"mean_file": manifest_lib.MEAN_NAME, "num_images": len(stacked),
             "channel_mean": flat.mean(axis=0).tolist(), "rgb_covariance": covariance.tolist(),
             "rgb_eigval": eigval[order].tolist(), "rgb_eigvec": eigvec[:, order].tolist()})
  with open(os.path.join(directory, manifest_lib.MANIFEST_NAME), "w") as f:
    f.write(manifest_lib.dumps(manifest))
  return directory
