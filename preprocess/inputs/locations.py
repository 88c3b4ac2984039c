"""An image's bytes from its location: a byte range of a tar, a zip member, or a loose file.

Locations are the index entries' (archive number, offset, size, method) that `archives` describes;
`Reader` opens the archives they name through Beam's `FileSystems` (local disks, GCS, S3), keeps a
few open across calls, skips a zip member's local header and inflates a deflated member.
"""

import zlib

from preprocess import errors
from preprocess.inputs import archives
from preprocess.inputs import sources
from preprocess.paths import join

_ZIP_LOCAL_HEADER = 30  # bytes before a member's variable-length name and extra field
# Open archive handles a shard writer keeps: the training archive is one file, so usually one.
_MAX_OPEN = 4


class Reader:
  """Reads an image's bytes from its location, keeping a few archives open across calls."""

  def __init__(self, input_dir, read_from=()):
    """`read_from`: the archives and folders that locations name by their index."""
    self._input_dir = input_dir
    self._read_from = read_from
    self._open = {}

  def read(self, relative, location=()):
    """The bytes of the file at `location`, or at `relative` under the input directory.

    Raises:
      errors.SkipImage: the member is truncated or cannot be inflated.
      OSError: the file cannot be read.
    """
    if not location:
      return sources.read_bytes(join(self._input_dir, relative))
    number, offset, size, method = location
    source = self._read_from[number]
    if method == "truncated":
      raise errors.SkipImage(errors.TRUNCATED, f"{source}: the member's {size} bytes at offset "
                             f"{offset} run past the end of the archive")
    if method == "file":
      return sources.read_bytes(join(source, relative))
    f = self._handle(source)
    if method.startswith("zip"):
      f.seek(offset)
      header = f.read(_ZIP_LOCAL_HEADER)
      offset += _ZIP_LOCAL_HEADER + int.from_bytes(header[26:28], "little") + int.from_bytes(
          header[28:30], "little")
    f.seek(offset)
    data = f.read(size)
    if len(data) < size:
      raise errors.SkipImage(errors.TRUNCATED, f"{source}: {len(data)} of {size} bytes at {offset}")
    if method != "zip8":
      return data
    try:
      return zlib.decompress(data, -15)
    except zlib.error as e:
      raise errors.SkipImage(errors.CORRUPT, f"{source}: cannot inflate the member at {offset}: "
                             f"{e}") from None

  def _handle(self, source):
    if source not in self._open:
      if len(self._open) >= _MAX_OPEN:
        self._open.pop(next(iter(self._open))).close()
      self._open[source] = archives.open_range(source)
    return self._open[source]

  def close(self):
    for f in self._open.values():
      f.close()
    self._open.clear()
