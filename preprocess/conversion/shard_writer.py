"""Writing one shard: read, convert and frame each image, streaming, to a temporary file.

Nothing here knows about Beam's pipeline model; it is called once per shard by a DoFn. Files go
through `paths`, so the output may be local or on an object store. A shard is written under a unique
temporary name and renamed when complete, so a retried or killed worker never leaves a partial shard
under a final name, and a retry rewrites the same bytes. Each finished shard then leaves its result
beside it (`resume`), so that a rerun after a stop keeps it instead of converting it again.
"""

import collections
import dataclasses
import hashlib
import io
import json
import uuid

import numpy as np

from common import records
from common import schema
from preprocess import errors
from preprocess import paths
from preprocess.audit import fingerprint
from preprocess.audit import search
from preprocess.conversion import convert
from preprocess.conversion import resume
from preprocess.conversion import stats as stats_lib
from preprocess.inputs import locations
from preprocess.paths import join


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """What every worker needs to turn listed files into records."""
  input_dir: str
  output_dir: str
  tmp_dir: str
  synsets: tuple  # sorted WNIDs; label = index
  encoding: str  # "jpeg" or "raw"
  quality: int
  jpeg_subsampling: str  # one of `convert.JPEG_SUBSAMPLINGS`
  max_pixels: int
  seed: int
  # The archives (and Kaggle's image folder) images are read from: an image's location names one by
  # its index here, so the 1.28M grouped entries do not each carry the archive's path.
  read_from: tuple = ()
  # The subset's digest (`subsets`), "" for the whole release: part of what a kept shard is checked
  # against (`resume.options_digest`).
  subset: str = ""
  # Whether each record is fingerprinted for the duplicate audit (`preprocess/audit/`), and
  # whether the training copies of held-out images are then left out ("train", else "").
  audit: bool = True
  drop_duplicates: str = ""


@dataclasses.dataclass(frozen=True)
class ShardSpec:
  split: str
  index: int
  num_shards: int

  @property
  def file(self):
    return f"{self.split}-{self.index:05d}-of-{self.num_shards:05d}.tfrecord"


def write_shard(config, spec, entries):
  """Converts and writes the images of one shard, or keeps the one an earlier run finished.

  Args:
    config: a `BuildConfig`.
    spec: the `ShardSpec` to write.
    entries: iterable of (sort_key, relative_path, label, size) tuples, with the image's location in
      an archive appended when it is not the file at relative_path (see `locations.Reader`).

  Returns:
    A JSON-serialisable dict: the shard's file, size, sha256, counts, skip counts (by class and by
    reason) and repairs, the path of its skip list and, for the training split, of its statistics;
    `kept` (True if an earlier run's shard was verified and kept) and `rebuilt` (why an earlier
    run's shard was not kept, or None). The skip list is a file (see `write_skip_list`) so that no
    process ever holds every shard's.
  """
  entries = sorted(entries)
  digest = {"options": resume.options_digest(config, spec), "inputs": resume.inputs_digest(entries)}
  earlier, rebuilt = resume.kept_result(config, spec, digest)
  if earlier:
    return _with_paths(config, spec, earlier, kept=True, rebuilt=None)
  if rebuilt:  # an earlier run's result, which no longer describes what will be written
    resume.forget(config, spec)
  image_format = schema.format_of_encoding(config.encoding)
  final_path = join(config.output_dir, spec.file)
  temp_path = join(config.tmp_dir, f"{spec.file}.{uuid.uuid4().hex}")
  digest_of_file, size, index = hashlib.sha256(), 0, []
  class_counts, skipped, repaired = collections.Counter(), [], []
  image_stats = stats_lib.ImageStats((schema.IMAGE_SIZE, schema.IMAGE_SIZE, schema.CHANNELS))
  fingerprints = []
  reader = locations.Reader(config.input_dir, config.read_from)
  sources = reader.read_all((relative, location) for _, relative, _, _, *location in entries)
  with paths.create(temp_path) as out:
    for (_, relative, label, _, *_), (data, error) in zip(entries, sources):
      try:
        if error:
          raise error
        image = convert.convert_image(data, image_size=schema.IMAGE_SIZE, encoding=config.encoding,
                                      quality=config.quality, subsampling=config.jpeg_subsampling,
                                      max_pixels=config.max_pixels,
                                      stored_pixels=spec.split == "train", thumbnail=config.audit)
      except errors.SkipImage as e:
        skipped.append((relative, label, e.reason, str(e)))
        continue
      except OSError as e:  # Unreadable file: permissions, vanished, I/O error.
        skipped.append((relative, label, errors.UNREADABLE, str(e)))
        continue
      synset = config.synsets[label]
      record = records.frame_record(
          schema.make_example(encoded=image.encoded, image_format=image_format, label=label,
                              synset=synset, filename=relative,
                              original_height=image.original_height,
                              original_width=image.original_width))
      index.append(records.index_line(size, len(record)))
      out.write(record)
      digest_of_file.update(record)
      size += len(record)
      class_counts[synset] += 1
      repaired.extend({"path": relative, "fix": fix} for fix in image.fixes)
      if spec.split == "train":
        image_stats.add(image.pixels)
      if config.audit:
        fingerprints.append(_fingerprint(len(fingerprints), image))
  reader.close()
  paths.rename(temp_path, final_path)
  # DALI's and the `tfrecord` package's index, beside the shard (common/records.py reads it).
  index_bytes = b"".join(index)
  paths.write_file(join(config.output_dir, records.index_name(spec.file)), index_bytes,
                   config.tmp_dir)
  if skipped:  # no file for none: an object store's writer cannot write an empty one (`paths`)
    write_skip_list(resume.skip_list_path(config, spec), spec.split, skipped)
  stats_sha256 = None
  if spec.split == "train":
    stats_bytes = image_stats.to_bytes()
    paths.write_file(resume.stats_path(config, spec), stats_bytes, config.tmp_dir)
    stats_sha256 = hashlib.sha256(stats_bytes).hexdigest()
  fingerprints_sha256 = None
  if config.audit and fingerprints:
    buffer = io.BytesIO()
    np.save(buffer, np.array(fingerprints, search.ROW))
    paths.write_file(resume.fingerprints_path(config, spec), buffer.getvalue(), config.tmp_dir)
    fingerprints_sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()
  result = {
      "split": spec.split,
      "index": spec.index,
      "file": spec.file,
      "num_examples": sum(class_counts.values()),
      "size_bytes": size,
      "sha256": digest_of_file.hexdigest(),
      "class_counts": dict(class_counts),
      "num_skipped": len(skipped),
      "skipped_classes": dict(collections.Counter(config.synsets[s[1]] for s in skipped)),
      "skipped_reasons": dict(collections.Counter(s[2] for s in skipped)),
      "repaired": repaired,
      "digest": digest,
      "stats_sha256": stats_sha256,
      "fingerprints_sha256": fingerprints_sha256,
      "index_sha256": hashlib.sha256(index_bytes).hexdigest(),
  }
  resume.write_result(config, spec, result)  # last: it says the three files above are complete
  return _with_paths(config, spec, result, kept=False, rebuilt=rebuilt)


def _with_paths(config, spec, result, **flags):
  """A shard's result as the job passes it on: with where its skip list (None: it skipped nothing)
  and statistics are."""
  return dict(
      result, skipped_file=(resume.skip_list_path(config, spec) if result["num_skipped"] else None),
      stats_file=resume.stats_path(config, spec) if result["stats_sha256"] else None,
      fingerprints_file=(resume.fingerprints_path(config, spec)
                         if result.get("fingerprints_sha256") else None), **flags)


def _fingerprint(record, image):
  """(record index, perceptual hash, digest) of a written image: the audit's `search.ROW`."""
  return record, fingerprint.phash(image.thumbnail), fingerprint.digest(image.encoded)


def write_skip_list(path, split, skipped):
  """Writes a shard's skipped files as JSON lines of the manifest's entries, sorted by path.

  Args:
    path: the file to write.
    split: the shard's split.
    skipped: (relative path, label, reason, detail) tuples.
  """
  paths.write_file(
      path, b"".join(
          json.dumps({"split": split, "path": relative, "reason": reason, "detail": detail
                     }).encode() + b"\n" for relative, _, reason, detail in sorted(skipped)))


def read_skip_list(path):
  """The entries `write_skip_list` wrote, one at a time, in path order.

  The file is read whole (a shard's list is small), so merging a thousand shards' lists holds no file
  open, and their bytes, not their parsed entries, are what stays in memory.
  """
  for line in io.BytesIO(paths.read(path)):
    yield json.loads(line)
