"""Datasets written straight through the data contract, so tests need not run the preprocessing job.

The records, shards, mean image and manifest follow `common/schema.py` and `common/manifest.py`.
Each image is a flat colour chosen by its label, with pixel noise:
  * `colour_dataset`: the trainer's tiny three-colour dataset (`tests/train/conftest.py`), which a
    narrow AlexNet learns in a few steps;
  * `write_dataset`: any classes and file names, e.g. 1,000 WNIDs or validation files named
    `ILSVRC2012_val_*.JPEG`.
"""

import hashlib
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from common import audit as audit_lib
from common import manifest as manifest_lib
from common import records as records_lib
from common import schema
from preprocess.audit import fingerprint
from preprocess.audit import search


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


def write_dataset(directory, synsets, splits, num_shards=None, seed=0, pixels=class_pixels,
                  names=None, audit=True):
  """Writes shards with their indexes, `mean.npy`, the audit's files and `manifest.json`.

  Args:
    directory: output directory (created).
    synsets: sorted WNIDs.
    splits: {split: [(filename, label)]}, the records of each split in order.
    num_shards: {split: shards} (records dealt round-robin); default one shard per split.
    seed: NumPy seed of the pixel noise.
    pixels: (label, rng) -> uint8 image of `schema.IMAGE_SIZE`, drawn in record order.
    names: {wnid: class name}; default "class <label>".
    audit: write the duplicate audit's files as stage 1 does: the training records' fingerprints
      and a `duplicates.json` without groups (the pixels are noise: no two are alike).

  Returns:
    The directory.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  made, train_pixels, fingerprints = {}, [], []
  for split, records in splits.items():
    count = (num_shards or {}).get(split, 1)
    shards, counts = [], {}
    examples, encoded = [], []
    for filename, label in records:
      image = pixels(label, rng)
      if split == "train":
        train_pixels.append(image.astype(np.float64))
      encoded.append(jpeg(image))
      examples.append(
          schema.make_example(encoded=encoded[-1], image_format=schema.FORMAT_JPEG, label=label,
                              synset=synsets[label], filename=filename, original_height=300,
                              original_width=400))
      counts[synsets[label]] = counts.get(synsets[label], 0) + 1
    for shard in range(count):
      name = f"{split}-{shard:05d}-of-{count:05d}.tfrecord"
      path = os.path.join(directory, name)
      with tf.io.TFRecordWriter(path) as writer:
        for serialized in examples[shard::count]:
          writer.write(serialized)
      with open(path, "rb") as f:
        data = f.read()
      with open(path + records_lib.INDEX_SUFFIX, "wb") as f:
        f.write(b"".join(
            records_lib.index_line(
                offset, records_lib.HEADER_BYTES + len(record) + records_lib.FOOTER_BYTES)
            for offset, record in records_lib.iter_records(path)))
      shards.append(
          manifest_lib.make_shard(name, len(examples[shard::count]), len(data),
                                  hashlib.sha256(data).hexdigest(), records_lib.index_name(name)))
      if split == "train":
        for number, stored in enumerate(encoded[shard::count]):
          thumb = fingerprint.thumbnail(stored)
          fingerprints.append(
              (search.image_id(shard,
                               number), fingerprint.phash(thumb), fingerprint.digest(stored)))
    made[split] = manifest_lib.make_split(shards, counts)
  stacked = np.stack(train_pixels)
  np.save(os.path.join(directory, manifest_lib.MEAN_NAME), stacked.mean(axis=0).astype(np.float32))
  flat = stacked.reshape(-1, 3)
  covariance = np.cov(flat, rowvar=False)
  eigval, eigvec = np.linalg.eigh(covariance)
  order = np.argsort(eigval)[::-1]
  audit_entry = None
  if audit:
    document = audit_lib.dumps(audit_lib.make_document([], {"hash": "pHash"}))
    with open(os.path.join(directory, audit_lib.NAME), "wb") as f:
      f.write(document)
    fingerprints_file = os.path.join(directory, audit_lib.FINGERPRINTS_NAME)
    np.save(fingerprints_file, np.array(fingerprints, search.ROW))
    with open(fingerprints_file, "rb") as f:
      fingerprints_sha256 = hashlib.sha256(f.read()).hexdigest()
    audit_entry = {
        "file": audit_lib.NAME, "sha256": hashlib.sha256(document).hexdigest(),
        "fingerprints": audit_lib.FINGERPRINTS_NAME, "fingerprints_sha256": fingerprints_sha256,
        "counts": audit_lib.count([]), "dropped": []
    }
  manifest = manifest_lib.make_manifest(
      image_size=schema.IMAGE_SIZE, encoding=schema.FORMAT_JPEG, synsets=synsets, names=names or
      {w: f"class {i}" for i, w in enumerate(synsets)}, splits=made, stats={
          "mean_file": manifest_lib.MEAN_NAME, "num_images": len(stacked),
          "channel_mean": flat.mean(axis=0).tolist(), "rgb_covariance": covariance.tolist(),
          "rgb_eigval": eigval[order].tolist(), "rgb_eigvec": eigvec[:, order].tolist()
      }, audit=audit_entry)
  with open(os.path.join(directory, manifest_lib.MANIFEST_NAME), "w") as f:
    f.write(manifest_lib.dumps(manifest))
  return directory


CLASS_COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))


def colour_pixels(label, rng):
  noise = rng.normal(0, 25, (schema.IMAGE_SIZE, schema.IMAGE_SIZE, 3))
  return np.clip(np.array(CLASS_COLOURS[label]) + noise, 0, 255).astype(np.uint8)


def colour_dataset(directory, train_per_class=6, validation_per_class=3, train_shards=2, seed=0,
                   validation_shards=1):
  """The three-colour dataset: `len(CLASS_COLOURS)` classes, files "<split>/<label>/<index>.JPEG".

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
  synsets = [f"n0000000{i}" for i in range(len(CLASS_COLOURS))]
  splits = {
      split: [
          (f"{split}/{label}/{index}.JPEG", label)
          for index in range(per_class)
          for label in range(len(CLASS_COLOURS))
      ] for split, per_class in (("train", train_per_class), ("validation", validation_per_class))
  }
  return write_dataset(directory, synsets, splits, seed=seed, pixels=colour_pixels,
                       num_shards={"train": train_shards, "validation": validation_shards},
                       names={w: f"colour {i}" for i, w in enumerate(synsets)})
