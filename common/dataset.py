"""A built dataset directory, read through its `manifest.json`: what the trainer and benchmarks see.

`load` parses the manifest (`common/manifest.py`, the document), checks that every shard it lists is
on disk with its size (or its SHA-256 and index), and returns a `Manifest`: the classes, the splits'
shard paths and the training statistics, with the mean image read on demand. Paths may be local or
URLs (gs://...): everything goes through `tf.io.gfile`, imported inside each function so that the
build, which writes through Beam's `FileSystems`, never loads TensorFlow (0.64 GiB) by importing
`common`.
"""

import dataclasses
import hashlib
import io
import posixpath

import numpy as np

from common import manifest as manifest_lib

_MANIFEST = manifest_lib.MANIFEST_NAME


def join(directory, name):
  """Joins a dataset directory (local or a URL such as gs://bucket/dir) and a relative name."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the module docstring)
  return posixpath.join(directory, name) if "://" in directory else tf.io.gfile.join(
      directory, name)


def file_sha256(path, chunk_size=1 << 22):
  """Hex SHA-256 of a file read through `tf.io.gfile` (local paths and gs:// alike)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the module docstring)
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

  @property
  def audited(self):
    """Whether stage 1 looked for duplicates in this dataset (`duplicates.json`)."""
    return bool(self.data["audit"])

  def duplicated_in_training(self, split):
    """The `image/filename`s of `split` that stage 1's audit found among the training images (of
    this dataset, or of the training dataset an ImageNetV2 build was audited against): what a clean
    score leaves out. Empty when the dataset was not audited.

    Raises:
      ManifestError: `duplicates.json` is missing or is not the file the manifest lists.
    """
    if not self.audited:
      return frozenset()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the module docstring)
    from common import audit as audit_lib  # pylint: disable=import-outside-toplevel
    path = join(self.directory, self.data["audit"]["file"])
    try:
      with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    except tf.errors.OpError as e:
      raise manifest_lib.ManifestError(f"{path}: cannot be read ({e.message})") from None
    if hashlib.sha256(data).hexdigest() != self.data["audit"]["sha256"]:
      raise manifest_lib.ManifestError(f"{path}: SHA-256 differs from {_MANIFEST} (replaced?)")
    try:
      return audit_lib.in_training(audit_lib.parse(data, path), split)
    except audit_lib.AuditError as e:
      raise manifest_lib.ManifestError(str(e)) from None

  def _split(self, split):
    if split not in self.data["splits"]:
      raise manifest_lib.ManifestError(
          f"{join(self.directory, _MANIFEST)}: no split {split!r}; it has "
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
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the module docstring)
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      mean = np.load(io.BytesIO(f.read()), allow_pickle=False)
  except (tf.errors.OpError, OSError, ValueError) as e:
    raise manifest_lib.ManifestError(f"{path}: cannot read the mean image ({e})") from None
  if mean.shape != (image_size, image_size, 3):
    raise manifest_lib.ManifestError(f"{path}: shape {mean.shape}, expected ({image_size}, "
                                     f"{image_size}, 3) for the mean image")
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
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the module docstring)
  path = join(directory, _MANIFEST)
  if not tf.io.gfile.exists(path):
    raise manifest_lib.ManifestError(f"{path}: not found; the dataset is incomplete or was never "
                                     "built (run python -m preprocess.build_shards)")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = manifest_lib.parse(f.read(), path)
  if data.get("label_base") != 0:
    raise manifest_lib.ManifestError(f"{path}: label_base {data.get('label_base')!r}, expected 0")
  labels = [c["label"] for c in data["classes"]]
  if labels != list(range(len(labels))):
    raise manifest_lib.ManifestError(f"{path}: class labels are not 0..{len(labels) - 1} in order")
  manifest = Manifest(directory, data)
  if verify != "none":
    for split, info in data["splits"].items():
      for shard in info["shards"]:
        _verify_shard(join(directory, shard["file"]), shard, verify == "sha256")
  return manifest


def _verify_shard(path, shard, check_hash):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the module docstring)
  if not tf.io.gfile.exists(path):
    raise manifest_lib.ManifestError(f"{path}: shard listed in {_MANIFEST} is missing")
  size = tf.io.gfile.stat(path).length
  if size != shard["size_bytes"]:
    raise manifest_lib.ManifestError(f"{path}: {size} bytes, {_MANIFEST} lists "
                                     f"{shard['size_bytes']} (truncated or replaced)")
  if check_hash and file_sha256(path) != shard["sha256"]:
    raise manifest_lib.ManifestError(f"{path}: SHA-256 differs from {_MANIFEST} (corrupt or "
                                     "replaced)")
  if check_hash and shard["index_file"]:
    from common import records  # pylint: disable=import-outside-toplevel
    index_path = path[:-len(shard["file"])] + shard["index_file"]  # beside the shard
    try:
      records.verify_index(path, index_path, opener=tf.io.gfile.GFile)
    except (ValueError, tf.errors.OpError) as e:
      raise manifest_lib.ManifestError(str(e).splitlines()[0]) from None
