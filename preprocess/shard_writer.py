"""Writing one shard: read, convert and frame each image, streaming, to a temporary file.

Nothing here knows about Beam's pipeline model; it is called once per shard by a DoFn. Files go
through Beam's `FileSystems`, so the output may be local or remote. A shard is written under a unique
temporary name and renamed when complete, so a retried or killed worker never leaves a partial shard
under a final name, and a retry rewrites the same bytes.
"""

import collections
import dataclasses
import hashlib
import struct
import uuid

import google_crc32c
from apache_beam.io.filesystems import FileSystems

from common import schema
from preprocess import archives
from preprocess import convert
from preprocess import stats as stats_lib
from preprocess.sources import join


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """What every worker needs to turn listed files into records."""
  input_dir: str
  output_dir: str
  tmp_dir: str
  synsets: tuple  # sorted WNIDs; label = index
  encoding: str  # "jpeg" or "raw"
  quality: int
  max_pixels: int
  seed: int


@dataclasses.dataclass(frozen=True)
class ShardSpec:
  split: str
  index: int
  num_shards: int

  @property
  def file(self):
    return f"{self.split}-{self.index:05d}-of-{self.num_shards:05d}.tfrecord"


def _masked_crc(data):
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data):
  """One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data."""
  length = struct.pack("<Q", len(data))
  return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def read_file(path):
  with FileSystems.open(path) as f:
    return f.read()


def write_shard(config, spec, entries):
  """Converts and writes the images of one shard.

  Args:
    config: a `BuildConfig`.
    spec: the `ShardSpec` to write.
    entries: iterable of (sort_key, relative_path, label) tuples, with the image's location in an
      archive appended when it is not the file at relative_path (see `archives.Reader`).

  Returns:
    A JSON-serialisable dict: the shard's file, size, sha256, counts, skips and repairs, and, for the
    training split, the path of its statistics file.
  """
  image_format = schema.format_of_encoding(config.encoding)
  final_path = join(config.output_dir, spec.file)
  temp_path = join(config.tmp_dir, f"{spec.file}.{uuid.uuid4().hex}")
  digest, size = hashlib.sha256(), 0
  class_counts, skipped, repaired = collections.Counter(), [], []
  image_stats = stats_lib.ImageStats((schema.IMAGE_SIZE, schema.IMAGE_SIZE, schema.CHANNELS))
  reader = archives.Reader(config.input_dir)
  with FileSystems.create(temp_path) as out:
    for _, relative, label, *location in sorted(entries):
      try:
        image = convert.convert_image(reader.read(relative, location),
                                      image_size=schema.IMAGE_SIZE, encoding=config.encoding,
                                      quality=config.quality, max_pixels=config.max_pixels)
      except convert.SkipImage as e:
        skipped.append({"path": relative, "label": label, "reason": e.reason, "detail": str(e)})
        continue
      except OSError as e:  # Unreadable file: permissions, vanished, I/O error.
        skipped.append({"path": relative, "label": label, "reason": convert.UNREADABLE,
                        "detail": f"{e.__class__.__name__}: {e}"})
        continue
      synset = config.synsets[label]
      record = frame_record(schema.make_example(
          encoded=image.encoded, image_format=image_format, label=label, synset=synset,
          filename=relative, original_height=image.original_height,
          original_width=image.original_width))
      out.write(record)
      digest.update(record)
      size += len(record)
      class_counts[synset] += 1
      repaired.extend({"path": relative, "fix": fix} for fix in image.fixes)
      if spec.split == "train":
        image_stats.add(image.pixels)
  reader.close()
  FileSystems.rename([temp_path], [final_path])
  stats_file = None
  if spec.split == "train":
    stats_file = join(config.tmp_dir, f"{spec.file}.stats.npz")
    with FileSystems.create(stats_file) as f:
      f.write(image_stats.to_bytes())
  return {
      "split": spec.split, "index": spec.index, "file": spec.file,
      "num_examples": sum(class_counts.values()), "size_bytes": size, "sha256": digest.hexdigest(),
      "class_counts": dict(class_counts), "skipped": skipped, "repaired": repaired,
      "stats_file": stats_file,
  }
