"""An image's bytes from its location: a byte range of a tar, a zip member, or a loose file.

Locations are the index entries' (archive number, offset, size, method) that `archives` describes;
`Reader` reads the archives they name through `paths` (local disks, GCS, S3). On a local disk it
keeps a few archives open across calls and seeks; on an object store each member is one ranged
request for its bytes alone (a zip member's with its local header), and `read_all` keeps the next
few requests in flight while the current image converts, so a shard waits on the store's latency
only once.
"""

import collections
import concurrent.futures
import zlib

from preprocess import errors
from preprocess import paths
from preprocess import stores

_ZIP_LOCAL_HEADER = 30  # bytes before a member's variable-length name and extra field
# A zip member's name and local extra field are read with its data in one request when they fit in
# this; longer ones cost a second request.
_ZIP_HEADER_ALLOWANCE = 1024
# Open archive handles a shard writer keeps on a local disk: the training archive is one file.
_MAX_OPEN = 4
# Reads in flight from an object store: enough to hide a request's latency (tens of ms on GCS and
# S3) behind the conversion of the images before it (about 5 ms each), at ~110 KB a member, and
# fewer than the 10 connections the stores' clients keep open.
_IN_FLIGHT = 8


class Reader:
  """Reads an image's bytes from its location, keeping a few local archives open across calls."""

  def __init__(self, input_dir, read_from=()):
    """`read_from`: the archives and folders that locations name by their index."""
    self._input_dir = input_dir
    self._read_from = read_from
    self._open = {}

  def read(self, relative, location=()):
    """The bytes of the file at `location`, or at `relative` under the input directory.

    Raises:
      errors.SkipImage: the member is truncated or cannot be inflated.
      OSError: the file cannot be read (a `paths.PathError`).
    """
    if not location:
      return paths.read(paths.join(self._input_dir, relative))
    number, offset, size, method = location
    source = self._read_from[number]
    if method == "truncated":
      raise errors.SkipImage(
          errors.TRUNCATED, f"{source}: the member's {size} bytes at offset "
          f"{offset} run past the end of the archive")
    if method == "file":
      return paths.read(paths.join(source, relative))
    if method.startswith("zip"):
      data, offset = self._zip_member(source, offset, size)
    else:
      data = self._range(source, offset, size)
    if len(data) < size:
      raise errors.SkipImage(errors.TRUNCATED, f"{source}: {len(data)} of {size} bytes at {offset}")
    if method != "zip8":
      return data
    try:
      return zlib.decompress(data, -15)
    except zlib.error as e:
      raise errors.SkipImage(errors.CORRUPT, f"{source}: cannot inflate the member at {offset}: "
                             f"{e}") from None

  def read_all(self, requests):
    """Yields (bytes, None) or (None, the SkipImage or OSError) for each (relative, location), in
    order; on an object store the next requests are in flight while the current one is used."""
    requests = iter(requests)
    if not any(
        stores.scheme(source) in stores.RANGED for source in (self._input_dir, *self._read_from)):
      for relative, location in requests:
        yield self._outcome(relative, location)
      return
    with concurrent.futures.ThreadPoolExecutor(_IN_FLIGHT) as pool:
      pending = collections.deque()
      for relative, location in requests:
        pending.append(pool.submit(self._outcome, relative, location))
        if len(pending) >= _IN_FLIGHT:
          yield pending.popleft().result()
      while pending:
        yield pending.popleft().result()

  def _outcome(self, relative, location):
    try:
      return self.read(relative, location), None
    except (errors.SkipImage, OSError) as e:
      return None, e

  def _range(self, source, offset, size):
    if stores.scheme(source) in stores.RANGED:
      return paths.read_range(source, offset, size)
    f = self._handle(source)
    f.seek(offset)
    return f.read(size)

  def _zip_member(self, source, offset, size):
    """(the member's stored bytes, their offset): the local header's lengths say where they start."""
    head = self._range(source, offset, _ZIP_LOCAL_HEADER + _ZIP_HEADER_ALLOWANCE + size)
    start = _ZIP_LOCAL_HEADER + int.from_bytes(head[26:28], "little") + int.from_bytes(
        head[28:30], "little")
    if start + size <= len(head) or len(head) < _ZIP_LOCAL_HEADER + _ZIP_HEADER_ALLOWANCE + size:
      return head[start:start + size], offset + start
    return self._range(source, offset + start, size), offset + start

  def _handle(self, source):
    if source not in self._open:
      if len(self._open) >= _MAX_OPEN:
        self._open.pop(next(iter(self._open))).close()
      self._open[source] = paths.open_ranges(source)
    return self._open[source]

  def close(self):
    for f in self._open.values():
      f.close()
    self._open.clear()
