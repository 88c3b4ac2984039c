"""Finding candidate pairs among fingerprints: hash buckets, and the pairs inside one bucket.

Pure NumPy; the Beam job (`preprocess/audit/beam.py`) groups the buckets across workers.

Fingerprints travel as `ROW` arrays (image id, hash, digest). An image id packs where the record is:
`reference` (1: the training dataset an ImageNetV2 build is audited against), the global shard
index (the job's `ShardSpec` list; the reference's training shards) and the record's place in it.

Multi-index hashing: the 64-bit hash is cut into `BANDS` bands of 8 bits, and an image goes into
one bucket per band, keyed by (band, the band's value). Two hashes within 7 bits differ in at most 7
bands, so they share a bucket; since every pHash has 32 bits set, distances are even and every pair
within 6 bits is found, and a pair at 8 unless its 8 differing bits fall in 8 different bands (the
worst copies measured, colour changes, were at 8). A pair is taken only in the lowest band its two
hashes share, so it is found once. Flat images (`fingerprint.is_flat`) have no usable hash: they
are bucketed by their digest alone, so only their exact copies are found.

Cost: a bucket of n hashes is compared in full, n(n-1)/2 XOR-and-popcount in NumPy (about 2 ns a
pair here: a bucket of 5,000, ImageNet's 1.28M hashes over 256 values, takes 25 ms). A bucket of more
than `MAX_BUCKET` (say a thousand near-black photographs that share a band) is compared only within
groups of equal wider keys (this band and the next), and its images are counted as not compared in
full, so one bucket costs at most MAX_BUCKET^2/2 pairs and cannot make the job quadratic.
"""

import numpy as np

from preprocess.audit import fingerprint

ROW = np.dtype([("id", "<i8"), ("hash", "<u8"), ("digest", "<i8")])
BANDS = 8
_BAND_BITS = 64 // BANDS
MAX_BUCKET = 20_000
_BLOCK = 256  # rows compared at once: 256 x 20,000 uint64 is 41 MB at most, transiently


def image_id(shard, record, reference=False):
  return (int(reference) << 62) | (int(shard) << 32) | int(record)


def where(identifier):
  """(reference, global shard index, record index) of an image id."""
  return bool(identifier >> 62), (identifier >> 32) & ((1 << 30) - 1), identifier & 0xFFFFFFFF


def bands(hashes):
  """The `BANDS` band values of each hash: uint64 [n] -> int64 [n, BANDS], band 0 the top bits."""
  shifts = np.arange(BANDS - 1, -1, -1, dtype=np.uint64) * np.uint64(_BAND_BITS)
  return ((hashes[:, None] >> shifts) & np.uint64((1 << _BAND_BITS) - 1)).astype(np.int64)


def bucket_keys(rows):
  """Yields (bucket key, the rows in it) for an array of `ROW`s: one bucket per band, flat images
  apart. A key is an int: band * 2^8 + the band's value, or for a flat image -1 - its digest's 62
  low bits (digests that share those are told apart in the bucket)."""
  flat = np.bitwise_count(rows["hash"]) != 32
  values = bands(rows["hash"][~flat])
  hashed = rows[~flat]
  for band in range(BANDS):
    keys = band * (1 << _BAND_BITS) + values[:, band]
    for key in np.unique(keys):
      yield int(key), hashed[keys == key]
  for digest in np.unique(rows["digest"][flat]):
    yield -1 - (int(digest) & ((1 << 62) - 1)), rows[flat & (rows["digest"] == digest)]


def candidate_pairs(key, rows):
  """The candidate pairs of one bucket, and how many of its images were not compared in full.

  Args:
    key: the bucket's key (from `bucket_keys`).
    rows: every `ROW` of the bucket, from all shards.

  Returns:
    ([(id_a, id_b, exact)], images not compared in full): pairs within `fingerprint.CANDIDATE_BITS`
    first found in this band (or, for flat images, of equal digest); `exact` when their digests are
    equal, so the confirmation need not look at them.
  """
  rows = np.sort(rows, order="id")
  if key < 0:  # flat images: their exact copies
    pairs = []
    for digest in np.unique(rows["digest"]):
      ids = rows["id"][rows["digest"] == digest]
      pairs += [(int(a), int(b), True) for i, a in enumerate(ids) for b in ids[i + 1:]]
    return pairs, 0
  band = key >> _BAND_BITS
  if len(rows) <= MAX_BUCKET:
    return _pairs(rows, band), 0
  wider = bands(rows["hash"])[:, min(band + 1, BANDS - 1)]
  pairs = []
  for value in np.unique(wider):
    part = rows[wider == value]
    if len(part) <= MAX_BUCKET:
      pairs += _pairs(part, band)
  return pairs, len(rows)


def _pairs(rows, band):
  """Pairs of `rows` (one bucket) within the candidate distance whose lowest shared band is `band`."""
  pairs = []
  hashes, values = rows["hash"], bands(rows["hash"])
  for start in range(0, len(rows), _BLOCK):
    distance = np.bitwise_count(hashes[start:start + _BLOCK, None] ^ hashes[None, :])
    close = distance <= fingerprint.CANDIDATE_BITS
    # Each pair once (a before b)...
    close &= np.arange(start, start + len(close))[:, None] < np.arange(len(rows))
    first, second = np.nonzero(close)
    first += start
    # ... and only in the lowest band where the two hashes agree (few pairs are close).
    lower = (values[first, :band] == values[second, :band]).any(axis=1)
    for i, j in zip(first[~lower], second[~lower]):
      pairs.append(
          (int(rows["id"][i]), int(rows["id"][j]), bool(rows["digest"][i] == rows["digest"][j])))
  return pairs
