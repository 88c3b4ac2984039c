"""TFRecord files without TensorFlow: framing, and the index beside each shard.

The file level of the shards, for stage 1's writer and checks and for `common.reader` (PyTorch,
JAX and other readers). A shard is a TFRecord file: each record is its length (uint64,
little-endian), the masked CRC32C of those 8 bytes, the data (one `tf.train.Example`, see
`common/schema.py`) and the masked CRC32C of the data. `frame_record` writes one; `iter_records`
reads them back and checks both CRCs.

The index (`<shard>.idx`) is the format NVIDIA DALI's `fn.readers.tfrecord` and the `tfrecord`
package on pip read: one text line per record, `"<byte offset> <record length>\\n"`, the length
counting the 12-byte header and the 4-byte trailing CRC, as their `tfrecord2idx` tools write it. It
lets a reader start at any record, so each of several workers can read its own share of a shard.

Files are opened with `open` (local paths) or with any `opener` taking `(path, "rb")` and returning
a seekable binary file, such as `fsspec.open` or `tf.io.gfile.GFile`: nothing here depends on either.
Nothing here imports TensorFlow (a test checks): a PyTorch user's process must not load it, and the
`tfrecord` package cannot share a process with it.
"""

import io
import struct

import google_crc32c

HEADER_BYTES = 12  # uint64 length, masked CRC32C of it
FOOTER_BYTES = 4  # masked CRC32C of the data
INDEX_SUFFIX = ".idx"


def masked_crc32c(data):
  """TFRecord's masked CRC32C of `data` (rotated and offset, so CRCs of CRCs stay strong)."""
  crc = google_crc32c.value(bytes(data))
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data):
  """One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data.

  Args:
    data: the record's payload (bytes).

  Returns:
    The framed bytes, `HEADER_BYTES + len(data) + FOOTER_BYTES` long.
  """
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data +
          struct.pack("<I", masked_crc32c(data)))


def _read_header(f, path, offset):
  """The data length of the record at `offset`, or None at the end of the file."""
  header = f.read(HEADER_BYTES)
  if not header:
    return None
  if len(header) < HEADER_BYTES:
    raise ValueError(f"{path}: truncated record header at byte {offset}")
  length, length_crc = struct.unpack("<QI", header)
  if masked_crc32c(header[:8]) != length_crc:
    raise ValueError(f"{path}: corrupt record length at byte {offset} (CRC mismatch)")
  return length


def iter_records(path, start=0, end=None, opener=open):
  """Yields the records of a shard, or of the byte range [start, end) of it, checking both CRCs.

  Args:
    path: the shard.
    start: byte offset of the first record to read (a record boundary, from the index).
    end: byte offset where reading stops (a record boundary), or None for the end of the file.
    opener: `opener(path, "rb")` gives a binary file; `open` by default.

  Yields:
    (byte offset, data) of each record; data is bytes.

  Raises:
    ValueError: naming the file and byte offset of a truncated or corrupt record, or of a range
      that does not end on a record boundary.
  """
  with opener(path, "rb") as f:
    if start:
      f.seek(start)
    offset = start
    while end is None or offset < end:
      length = _read_header(f, path, offset)
      if length is None:
        if end is not None:
          raise ValueError(f"{path}: ends at byte {offset}, before byte {end}")
        return
      data = f.read(length)
      footer = f.read(FOOTER_BYTES)
      if len(data) < length or len(footer) < FOOTER_BYTES:
        raise ValueError(f"{path}: truncated record at byte {offset} ({length} bytes of data "
                         "announced)")
      if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise ValueError(f"{path}: corrupt record at byte {offset} (data CRC mismatch)")
      yield offset, data
      offset += HEADER_BYTES + length + FOOTER_BYTES
    if offset != end:
      raise ValueError(f"{path}: byte {end} is not a record boundary (a record ends at {offset})")


def index_name(shard_file):
  """The index file of a shard: `train-00000-of-00008.tfrecord` -> `...tfrecord.idx`."""
  return shard_file + INDEX_SUFFIX


def index_line(offset, framed_length):
  """One line of an index: the record's byte offset and its framed length, as bytes.

  Args:
    offset: where the record starts in the shard.
    framed_length: `len(frame_record(data))`, header and trailing CRC included.

  Returns:
    b"<offset> <framed_length>\\n".
  """
  return b"%d %d\n" % (offset, framed_length)


def read_index(index_path, opener=open):
  """The (offset, framed length) of every record an index lists.

  Args:
    index_path: the `.idx` file.
    opener: as for `iter_records`.

  Returns:
    A list of (offset, length) int pairs, in file order.

  Raises:
    ValueError: naming the file and line of a line that is not two non-negative integers.
  """
  with opener(index_path, "rb") as f:
    text = f.read()
  entries = []
  for number, line in enumerate(text.splitlines(), 1):
    fields = line.split()
    if len(fields) != 2 or not all(field.isdigit() for field in fields):
      raise ValueError(f"{index_path}: line {number} is not '<offset> <length>': {line[:40]!r}")
    entries.append((int(fields[0]), int(fields[1])))
  return entries


def verify_index(shard_path, index_path, opener=open):
  """Checks that an index lists exactly the records of its shard, reading only the headers.

  Args:
    shard_path: the shard.
    index_path: its index.
    opener: as for `iter_records`.

  Returns:
    The number of records.

  Raises:
    ValueError: one line naming the shard, its index and the first record where they disagree.
  """
  listed = read_index(index_path, opener)
  with opener(shard_path, "rb") as f:
    f.seek(0, io.SEEK_END)
    size = f.tell()
    f.seek(0)
    offset, count = 0, 0
    while offset < size:
      framed = HEADER_BYTES + _read_header(f, shard_path, offset) + FOOTER_BYTES
      if offset + framed > size:
        raise ValueError(f"{shard_path}: truncated record at byte {offset}")
      if count >= len(listed) or listed[count] != (offset, framed):
        found = (f"byte {listed[count][0]} with {listed[count][1]} bytes"
                 if count < len(listed) else f"only {len(listed)} records")
        raise ValueError(f"{shard_path}: record {count} is at byte {offset} with {framed} bytes, "
                         f"its index {index_path} lists {found}")
      f.seek(offset + framed)
      offset, count = offset + framed, count + 1
  if count != len(listed):
    raise ValueError(f"{shard_path}: holds {count} records, its index {index_path} lists "
                     f"{len(listed)}")
  return count


def worker_share(index, worker, num_workers):
  """The byte range of the records one of `num_workers` workers reads from a shard.

  Records are split in contiguous runs, worker w taking records [n*w // k, n*(w+1) // k): the
  shares are disjoint and together cover the shard (the `tfrecord` package splits the same way).

  Args:
    index: `read_index` of the shard.
    worker: this worker's number, 0 <= worker < num_workers.
    num_workers: how many workers share the shard.

  Returns:
    (start, end) byte offsets for `iter_records`; start == end when the share is empty.

  Raises:
    ValueError: for a worker number out of range.
  """
  if not 0 <= worker < num_workers:
    raise ValueError(f"worker {worker} is not in 0..{num_workers - 1}")
  if not index:
    return 0, 0
  starts = [offset for offset, _ in index] + [index[-1][0] + index[-1][1]]  # and the end
  return (starts[len(index) * worker // num_workers],
          starts[len(index) * (worker + 1) // num_workers])
