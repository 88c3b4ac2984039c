"""`manifest.json`: how the preprocessing job tells the trainer (and the user) what a dataset holds.

The job writes the manifest last, so its presence means the dataset is complete. Everything a consumer
sizes itself from (classes, example counts, shard files, mean image, colour PCA) comes from here, never
from constants such as 1000 classes or 1,281,167 images.

Layout (all counts are integers, paths are relative to the dataset directory):
  schema_version, image_size, encoding ("JPEG" or "RAW"), label_base (always 0),
  classes: [{label, synset, name}] in label order (sorted WNIDs),
  splits.<split>: {num_examples, class_counts {wnid: n}, shards [{file, num_examples, size_bytes,
    sha256}], files_seen, skipped, repaired, ignored},
  skipped: [{split, path, reason, detail}], repaired: [{split, path, fix}], ignored (count),
  stats: {mean_file, num_images, channel_mean [3], rgb_covariance [3][3], rgb_eigval [3],
    rgb_eigvec [3][3]} over the written training images, pixel values in 0..255; eigenvalues are in
    descending order and `rgb_eigvec[i][j]` is component i (R, G, B) of eigenvector j,
  args: the resolved options of the run that wrote it.
"""

import dataclasses
import hashlib
import io
import json
import posixpath

import numpy as np
import tensorflow as tf

MANIFEST_NAME = "manifest.json"
MEAN_NAME = "mean.npy"
SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")


class ManifestError(ValueError):
  """The dataset directory does not hold a complete, consistent dataset."""


def join(directory, name):
  """Joins a dataset directory (local or a URL such as gs://bucket/dir) and a relative name."""
  return posixpath.join(directory, name) if "://" in directory else tf.io.gfile.join(directory, name)


def dumps(manifest):
  """The canonical text of a manifest dict: sorted keys, so equal content gives equal bytes."""
  return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def file_sha256(path, chunk_size=1 << 22):
  """Hex SHA-256 of a file read through `tf.io.gfile` (local paths and gs:// alike)."""
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while chunk := f.read(chunk_size):
      digest.update(chunk)
  return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Manifest:
  """A loaded manifest: the parsed JSON plus the directory it describes."""
  directory: str
  data: dict

  @property
  def num_classes(self):
    return len(self.data["classes"])

  @property
  def synsets(self):
    return [c["synset"] for c in self.data["classes"]]

  @property
  def class_names(self):
    return [c["name"] for c in self.data["classes"]]

  @property
  def encoding(self):
    return self.data["encoding"]

  @property
  def image_size(self):
    return self.data["image_size"]

  @property
  def stats(self):
    return self.data["stats"]

  def has_split(self, split):
    return self.data["splits"].get(split, {}).get("num_examples", 0) > 0

  def num_examples(self, split):
    return self._split(split)["num_examples"]

  def shard_paths(self, split):
    """Absolute paths of the split's shards, in shard order."""
    return [join(self.directory, s["file"]) for s in self._split(split)["shards"]]

  def mean_image(self):
    """The per-pixel training mean, float32 `[image_size, image_size, 3]` in 0..255 units."""
    return read_mean_image(join(self.directory, self.stats["mean_file"]), self.image_size)

  def _split(self, split):
    if split not in self.data["splits"]:
      raise ManifestError(f"{join(self.directory, MANIFEST_NAME)}: no split {split!r}; it has "
                          f"{sorted(self.data['splits'])}")
    return self.data["splits"][split]


def read_mean_image(path, image_size):
  """Reads a mean image (`mean.npy` of a dataset, or its copy in a model directory).

  Args:
    path: the .npy file, local or on any filesystem `tf.io.gfile` knows.
    image_size: the expected side of the square image.

  Returns:
    float32 `[image_size, image_size, 3]` in 0..255 units.

  Raises:
    ManifestError: if the file is missing, unreadable or of another shape.
  """
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      mean = np.load(io.BytesIO(f.read()), allow_pickle=False)
  except (tf.errors.OpError, OSError, ValueError) as e:
    raise ManifestError(f"{path}: cannot read the mean image ({e})") from None
  if mean.shape != (image_size, image_size, 3):
    raise ManifestError(f"{path}: shape {mean.shape}, expected ({image_size}, {image_size}, 3) "
                        "for the mean image")
  return mean.astype(np.float32)


def load(directory, verify="size"):
  """Loads and checks the manifest of a dataset directory.

  Args:
    directory: the `--output_dir` of `preprocess.build_shards`.
    verify: "size" checks that every listed shard exists with its listed size (cheap), "sha256"
      also re-hashes every shard (reads the whole dataset), "none" checks nothing on disk.

  Returns:
    A `Manifest`.

  Raises:
    ManifestError: with one line naming the file at fault.
  """
  path = join(directory, MANIFEST_NAME)
  if not tf.io.gfile.exists(path):
    raise ManifestError(f"{path}: not found; the dataset is incomplete or was never built "
                        "(run python -m preprocess.build_shards)")
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ManifestError(f"{path}: not valid JSON ({e})") from None
  if data.get("schema_version") != SCHEMA_VERSION:
    raise ManifestError(f"{path}: schema_version {data.get('schema_version')!r}, this code reads "
                        f"{SCHEMA_VERSION}")
  if data.get("label_base") != 0:
    raise ManifestError(f"{path}: label_base {data.get('label_base')!r}, expected 0")
  labels = [c["label"] for c in data["classes"]]
  if labels != list(range(len(labels))):
    raise ManifestError(f"{path}: class labels are not 0..{len(labels) - 1} in order")
  manifest = Manifest(directory, data)
  if verify != "none":
    for split, info in data["splits"].items():
      for shard in info["shards"]:
        _verify_shard(join(directory, shard["file"]), shard, verify == "sha256")
  return manifest


def _verify_shard(path, shard, check_hash):
  if not tf.io.gfile.exists(path):
    raise ManifestError(f"{path}: shard listed in {MANIFEST_NAME} is missing")
  size = tf.io.gfile.stat(path).length
  if size != shard["size_bytes"]:
    raise ManifestError(f"{path}: {size} bytes, {MANIFEST_NAME} lists {shard['size_bytes']} "
                        "(truncated or replaced)")
  if check_hash and file_sha256(path) != shard["sha256"]:
    raise ManifestError(f"{path}: SHA-256 differs from {MANIFEST_NAME} (corrupt or replaced)")
