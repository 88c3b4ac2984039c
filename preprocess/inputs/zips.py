"""A zip's central directory read as a stream: each member's name and where its bytes are.

Python's zipfile builds a ZipInfo object for every member before it lists one; for Kaggle's ImageNet
zip (1.33M images) that alone took 0.86 GiB in the launcher. This reader goes through the directory
in blocks and yields plain tuples, so the launcher holds only the index it keeps. The format is
PKWARE's APPNOTE: the end-of-central-directory record (and, past 65,535 members or 4 GiB, its zip64
form, found through a locator just before it) says where the directory is and how many entries it
has; each entry is a 46-byte header, then the name, an extra field (holding 64-bit sizes and offsets
for zip64) and a comment. Members are read later by `locations.Reader`, past their local header.
"""

import struct

from preprocess.inputs import archives

_EOCD = struct.Struct("<4s4H2LH")  # signature, disk, directory disk, entries here, entries, size,
_EOCD_SIGNATURE = b"PK\x05\x06"  # offset, comment length
_LOCATOR = struct.Struct("<4sLQL")  # signature, disk of the zip64 record, its offset, disks
_LOCATOR_SIGNATURE = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # signature, record size, versions, disks, entries here,
_EOCD64_SIGNATURE = b"PK\x06\x06"  # entries, directory size, directory offset
_ENTRY = struct.Struct("<4s6H3L5H2L")  # signature, versions, flags, method, time, date, crc,
_ENTRY_SIGNATURE = b"PK\x01\x02"  # sizes, name/extra/comment lengths, disk, attributes, offset
_ZIP64_EXTRA = 0x0001
_FLAG_ENCRYPTED = 0x0001
_FLAG_UTF8 = 0x0800
_MAX_COMMENT = 0xFFFF
_BLOCK = 1 << 20


def members(path):
  """Yields (name, local header offset, compressed size, method, encrypted) of each file member.

  Directory entries (names ending in "/") are left out. Offsets are corrected for bytes prepended to
  the zip, as zipfile does.

  Raises:
    archives.ArchiveError: not a zip, a zip split over several disks, or a damaged directory.
  """
  size = archives.file_size(path)
  with archives.open_range(path) as f:
    start, length, count, shift = _directory(f, path, size)
    blocks = _Blocks(f, path, start, start + length)
    for number in range(count):
      entry = blocks.take(_ENTRY.size)
      (signature, _, _, flags, method, _, _, _, compressed, uncompressed, name_length, extra_length,
       comment_length, _, _, _, offset) = _ENTRY.unpack(entry)
      if signature != _ENTRY_SIGNATURE:
        raise archives.ArchiveError(f"{path}: the zip's central directory is damaged at entry "
                                    f"{number} (byte offset {blocks.offset - _ENTRY.size})")
      raw_name = blocks.take(name_length)
      extra = blocks.take(extra_length)
      blocks.take(comment_length)
      name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", "replace")
      if name.endswith("/"):
        continue
      if 0xFFFFFFFF in (compressed, uncompressed, offset):
        compressed, offset = _zip64_fields(extra, uncompressed, compressed, offset)
      yield name, offset + shift, compressed, method, bool(flags & _FLAG_ENCRYPTED)


def _directory(f, path, size):
  """(start, length, entries, shift) of the central directory, where it actually is in the file.

  `shift` is how far the zip's own offsets are from the file's: non-zero when bytes were prepended.
  """
  tail_length = min(size, _EOCD.size + _MAX_COMMENT)
  f.seek(size - tail_length)
  tail = f.read(tail_length)
  at = tail.rfind(_EOCD_SIGNATURE)
  if at < 0 or len(tail) - at < _EOCD.size:
    raise archives.ArchiveError(f"{path}: not a readable zip (no end of central directory)")
  _, disk, directory_disk, _, count, length, stated_start, _ = _EOCD.unpack_from(tail, at)
  eocd = size - tail_length + at
  records = eocd  # the directory ends where the end records begin
  if eocd >= _LOCATOR.size + _EOCD64.size:
    f.seek(eocd - _LOCATOR.size)
    locator = f.read(_LOCATOR.size)
    if locator[:4] == _LOCATOR_SIGNATURE:
      records = eocd - _LOCATOR.size - _EOCD64.size
      f.seek(records)
      eocd64 = _EOCD64.unpack(f.read(_EOCD64.size))
      if eocd64[0] != _EOCD64_SIGNATURE:
        raise archives.ArchiveError(f"{path}: not a readable zip (damaged zip64 end record)")
      disk, directory_disk, count, length, stated_start = (eocd64[4], eocd64[5], eocd64[7],
                                                           eocd64[8], eocd64[9])
  if disk or directory_disk:
    raise archives.ArchiveError(f"{path}: a zip split over several files cannot be read; join it "
                                "first (zip -s 0)")
  start = records - length
  if start < 0:
    raise archives.ArchiveError(f"{path}: not a readable zip (its central directory would start "
                                "before the file)")
  return start, length, count, start - stated_start


def _zip64_fields(extra, uncompressed, compressed, offset):
  """The compressed size and offset, from the zip64 extra field where the header holds 0xFFFFFFFF.

  The field holds, in this order, only the values that overflowed: uncompressed size, compressed
  size, local header offset (8 bytes each).
  """
  position = 0
  while position + 4 <= len(extra):
    kind, length = struct.unpack_from("<HH", extra, position)
    if kind == _ZIP64_EXTRA:
      values = iter(struct.unpack_from(f"<{length // 8}Q", extra, position + 4))
      if uncompressed == 0xFFFFFFFF:
        next(values, None)
      if compressed == 0xFFFFFFFF:
        compressed = next(values, compressed)
      if offset == 0xFFFFFFFF:
        offset = next(values, offset)
      break
    position += 4 + length
  return compressed, offset


class _Blocks:
  """Sequential reads of a byte range in large blocks, handed out in small pieces."""

  def __init__(self, f, path, start, end):
    self._f = f
    self._path = path
    self._end = end
    self._buffer = b""
    self._used = 0
    self.offset = start  # of the next byte handed out
    f.seek(start)

  def take(self, length):
    if len(self._buffer) - self._used < length:
      wanted = max(length, _BLOCK)
      more = self._f.read(min(wanted, self._end - self.offset - (len(self._buffer) - self._used)))
      self._buffer = self._buffer[self._used:] + more
      self._used = 0
      if len(self._buffer) < length:
        raise archives.ArchiveError(f"{self._path}: the zip's central directory ends early "
                                    f"(byte offset {self.offset})")
    piece = self._buffer[self._used:self._used + length]
    self._used += length
    self.offset += length
    return piece
