"""The audit inside the Beam job: buckets of fingerprints grouped across workers, candidates
confirmed on the stored images, the confirmed pairs handed to the job's merge step.

Only what the launcher needs ever reaches it: the confirmed pairs with their members' split, file
and class (`groups.document` makes the groups of them). Every fingerprint stays on the workers:
each shard's file is read by the worker that buckets it, and each bucket is searched by one worker.
"""

import io

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from common import reader
from common import records
from common import schema
from preprocess import paths
from preprocess import stores
from preprocess.audit import fingerprint
from preprocess.audit import search

# What the confirmation step passes on, besides the pairs it confirmed.
NOT_COMPARED = "not_compared"
EDGE = "edge"
# Rows of the reference's fingerprints a worker buckets at once (4.8 MB).
REFERENCE_SHARE = 200_000


def read_rows(path, shard, reference=False, start=0, count=None):
  """The `search.ROW`s of a fingerprint file (.npy of `search.ROW`), all or `count` from row
  `start` (one ranged read); ids that are record indices are made whole for `shard`, whole ids
  (the dataset's `fingerprints.npy`) marked as the reference's if asked."""
  if count is None:
    rows = np.load(io.BytesIO(paths.read(path)), allow_pickle=False)
  else:
    with paths.open_ranges(path) as f:
      np.lib.format.read_magic(f)
      np.lib.format.read_array_header_1_0(f)
      header = f.tell()
    data = paths.read_range(path, header + start * search.ROW.itemsize, count * search.ROW.itemsize)
    rows = np.frombuffer(data, search.ROW)
  rows = rows.copy()
  if shard is not None:
    rows["id"] = [search.image_id(shard, record, reference) for record in rows["id"]]
  elif reference:
    rows["id"] |= np.int64(1) << 62
  return rows


class BucketFn(beam.DoFn):
  """Reads one shard's fingerprints (or a share of the reference's) and emits them by bucket."""

  def __init__(self, options, roots):
    self._options, self._roots = options, roots

  def setup(self):
    stores.connect(self._options, self._roots)

  def process(self, element):
    path, shard, reference, start, count = element
    for key, rows in search.bucket_keys(read_rows(path, shard, reference, start, count)):
      yield key, rows.tobytes()


def find_candidates(keyed):
  """The candidate pairs of one bucket (pairs of reference images alone are the reference's own
  audit's, and left out); then the count of images not compared in full, if any."""
  key, blobs = keyed
  rows = np.frombuffer(b"".join(blobs), search.ROW)
  pairs, not_compared = search.candidate_pairs(key, rows)
  for a, b, exact in pairs:
    if not (search.where(a)[0] and search.where(b)[0]):
      yield a, b, exact
  if not_compared:
    yield NOT_COMPARED, not_compared, False


class ConfirmFn(beam.DoFn):
  """Compares the two stored images of a candidate pair; emits (EDGE, a, member a, b, member b)
  for a duplicate, where a member is (split, file, class)."""

  def __init__(self, options, roots, shards, reference_shards):
    """`shards`, `reference_shards`: (split, shard path, index path) by global shard index."""
    self._options, self._roots = options, roots
    self._shards, self._reference_shards = shards, reference_shards
    self._confirmed = Metrics.counter("build_shards", "duplicates_confirmed")
    self._rejected = Metrics.counter("build_shards", "candidates_rejected")

  def setup(self):
    stores.connect(self._options, self._roots)
    self._indexes = {}

  def process(self, candidate):
    a, b, exact = candidate
    if a == NOT_COMPARED:
      yield candidate
      return
    (member_a, thumb_a), (member_b, thumb_b) = self._record(a, exact), self._record(b, exact)
    if exact or fingerprint.similarity(thumb_a, thumb_b) >= fingerprint.SIMILAR:
      self._confirmed.inc()
      yield EDGE, a, member_a, b, member_b
    else:
      self._rejected.inc()

  def _record(self, identifier, exact):
    """((split, file, class), its thumbnail, or None when `exact`) of an image id, read by its
    shard's index."""
    reference, shard, record = search.where(identifier)
    split, path, index_path = (self._reference_shards if reference else self._shards)[shard]
    if (reference, shard) not in self._indexes:
      self._indexes[reference, shard] = records.read_index(index_path, opener=_open)
    offset, length = self._indexes[reference, shard][record]
    framed = paths.read_range(path, offset, length)
    example = reader.parse_example(framed[records.HEADER_BYTES:-records.FOOTER_BYTES],
                                   f"{path} record {record}")
    member = (split, example["image/filename"].decode(), example["image/class/synset"].decode())
    if exact:
      return member, None
    if example["image/format"].decode() == schema.FORMAT_RAW:
      return member, fingerprint.thumbnail(pixels=reader.decode_image(example, schema.FORMAT_RAW))
    return member, fingerprint.thumbnail(example["image/encoded"])


def _open(path, mode):
  del mode  # always binary
  return io.BytesIO(paths.read(path))


def audit(root, results, options, roots, shard_bases, shards, reference=None):
  """Adds the audit to a pipeline; returns its PCollection of confirmed pairs and counts.

  Args:
    root: the pipeline.
    results: the shard writers' results (each names its fingerprint file).
    options: the job's pipeline options, for the workers' filesystems.
    roots: the input and output folders (their filesystems are connected on the workers).
    shard_bases: {split: the global index of its first shard}.
    shards: (split, shard path, index path) by global shard index.
    reference: for an evaluation-only build, (the training dataset's fingerprint file, its number
      of rows, its shards as `shards`); else None.
  """
  own = results | "fingerprint_files" >> beam.FlatMap(lambda r: [
      (r["fingerprints_file"], shard_bases[r["split"]] + r["index"], False, 0, None)
  ] if r["fingerprints_file"] else [])
  sources = own
  reference_shards = ()
  if reference:
    path, rows, reference_shards = reference
    shares = [
        (path, None, True, start, REFERENCE_SHARE) for start in range(0, rows, REFERENCE_SHARE)
    ]
    sources = ((own, root | "reference_fingerprints" >> beam.Create(shares)) |
               "all_fingerprints" >> beam.Flatten())
  return (sources | "bucket_fingerprints" >> beam.ParDo(BucketFn(options, roots)) |
          "group_by_bucket" >> beam.GroupByKey() |
          "find_candidates" >> beam.FlatMap(find_candidates) |
          "confirm_candidates" >> beam.ParDo(ConfirmFn(options, roots, shards, reference_shards)))
