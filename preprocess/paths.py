"""Files on any filesystem Beam knows, and the one place where their errors are told apart.

Below every room: the input's listings, the shard writer and the output folder read and write only
through these functions, never through `open()`, `os` or `FileSystems` directly, so `--input_dir`
and `--output_dir` may each be a local disk, gs://, s3:// or any other Beam filesystem. Each store
reports a missing file, a refusal and a failure in its own exception types (`stores.classify`);
every function here turns them into one of three `OSError`s, named by what the user can do:

  Missing (a FileNotFoundError): the file, folder or bucket is not there;
  Denied (a PermissionError): the store refused, for want of credentials or permission;
  Unreadable (an OSError): anything else, such as a store that cannot be reached.

Each says `<path>: <what>` in one line, so a caller that catches `OSError` (a skipped image, a
result a rerun cannot trust) and the command's last resort (`build_shards.main`) need nothing else.

Object stores have no folders: a "folder" is a prefix, listed with `list_files` and removed with
`delete_tree`. A write becomes visible under its name only when complete: `write_file` uploads in
one request to a store, and elsewhere writes a temporary and renames it; a stream (`create`) is
written under a temporary name by its caller and renamed (a copy inside a store). Beam's S3 writer
cannot write an empty object (apache/beam#21369): empty files go through `write_file`, or are
not written.
"""

import contextlib
import io
import os

from apache_beam.io.filesystems import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from preprocess import stores


class PathError(OSError):
  """A file operation that failed for the reason its subclass names; str() is one line."""

  def __init__(self, path, what):
    super().__init__(f"{path}: {what}")
    self.path = path

  def __reduce__(self):  # Beam pickles exceptions between workers
    return _rebuild, (self.__class__, self.path, str(self))


def _rebuild(cls, path, message):
  error = cls(path, "")
  error.args = (message,)
  return error


class Missing(PathError, FileNotFoundError):
  """The file, folder or bucket is not there."""


class Denied(PathError, PermissionError):
  """The store refused: no credentials, wrong ones, or no permission."""


class Unreadable(PathError):
  """Any other failure: the store unreachable, an I/O error."""


def translate(path, error):
  """The `PathError` for a store's exception at `path`, or None if it is not a store's."""
  kind, detail = stores.classify(error)
  if kind == stores.MISSING:
    return Missing(path, f"not found ({detail})")
  if kind == stores.DENIED:
    hint = stores.credentials_hint(path)
    return Denied(path, f"access denied ({detail}){'; ' + hint if hint else ''}")
  if kind == stores.UNREADABLE:
    return Unreadable(path, f"cannot be read or written ({detail})")
  return None


@contextlib.contextmanager
def translated(path):
  """Turns a store's exception raised inside into the `PathError` for `path`."""
  try:
    yield
  except PathError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    error = translate(path, e)
    if error is None:
      raise
    raise error from e


def join(base, relative):
  return FileSystems.join(base, *relative.split("/")) if relative else base


def basename(path):
  return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def exists(path):
  with translated(path):
    if stores.scheme(path) in stores.RANGED:
      return stores.object_exists(path)
    return FileSystems.exists(path)


def read(path):
  """The bytes of a file, as stored (never decompressed by its name)."""
  with translated(path):
    return stores.read_whole(path)


def read_range(path, start, size):
  """`size` bytes of a file from `start`, fewer past its end; one request on an object store."""
  with translated(path):
    return stores.read_range(path, start, size)


def open_sequential(path):
  """A file to read from its start onward (a zip's directory, a compressed tar), as stored."""
  with translated(path):
    return _Translating(path, FileSystems.open(path,
                                               compression_type=CompressionTypes.UNCOMPRESSED))


def open_ranges(path):
  """A seekable file for reads at offsets (tar headers, members): on an object store, each read is
  one request for exactly what it asks; elsewhere, Beam's file."""
  if stores.scheme(path) in stores.RANGED:
    return _RangeFile(path, size(path))
  return open_sequential(path)


def size(path):
  with translated(path):
    matched = FileSystems.match([path])[0].metadata_list
  if not matched:
    raise Missing(path, "not found")
  return matched[0].size_in_bytes


def list_files(directory, pattern="**"):
  """`FileMetadata` of the files under `directory` matching `pattern` ("*": its own files only);
  empty if there is no such folder or prefix (a missing bucket is `Missing`)."""
  with translated(directory):
    matched = FileSystems.match([join(directory.rstrip("/"), pattern)])[0].metadata_list
  # Tools that "create folders" in a bucket leave empty objects named "<folder>/".
  return [m for m in matched if not m.path.endswith("/")]


def has_files(directory):
  with translated(directory):
    return bool(FileSystems.match([join(directory.rstrip("/"), "**")], limits=[1])[0].metadata_list)


@contextlib.contextmanager
def create(path):
  """A file to write; on a store, visible under `path` once closed. Use `write_file` for files a
  stop must never leave half-written."""
  with translated(path):
    f = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
  with translated(path), f:
    yield _Translating(path, f)


def write_file(path, data, temp_dir=None):
  """Writes `data` to `path`, which is never seen half-written: on an object store in one upload,
  elsewhere through a temporary in `temp_dir` (default: beside `path`), renamed."""
  if stores.scheme(path) in stores.RANGED:
    with translated(path):
      stores.write_object(path, data)
    return
  temp = (join(temp_dir, f"{basename(path)}.tmp") if temp_dir else f"{path}.tmp")
  with create(temp) as f:
    f.write(data)
  rename(temp, path)


def rename(source, destination):
  """Moves a file; a local destination's folder is made if needed (Beam's rename does not)."""
  with translated(source):
    if stores.scheme(source) in stores.RANGED and stores.scheme(destination) == stores.scheme(
        source):
      stores.rename_object(source, destination)
      return
    if not stores.scheme(destination):
      os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    FileSystems.rename([source], [destination])


def delete(paths):
  """Deletes files; those already gone are no error."""
  paths = list(paths)
  if not paths:
    return
  with translated(paths[0]):
    stores.delete_objects([p for p in paths if stores.scheme(p) in stores.RANGED])
    others = [p for p in paths if stores.scheme(p) not in stores.RANGED and FileSystems.exists(p)]
    if others:
      FileSystems.delete(others)


def delete_tree(directory):
  """Deletes a folder and everything in it, or every object under the prefix `directory/`."""
  if stores.scheme(directory) in ("gs", "s3"):
    delete([m.path for m in list_files(directory)])
  else:
    delete([directory])


class _Translating(io.RawIOBase):
  """A file whose every operation raises `PathError`s for `path`."""

  def __init__(self, path, f):
    super().__init__()
    self._path, self._f = path, f

  def read(self, size=-1):
    with translated(self._path):
      return self._f.read(size)

  def readinto(self, buffer):
    data = self.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def write(self, data):
    with translated(self._path):
      return self._f.write(data)

  def seek(self, offset, whence=io.SEEK_SET):
    with translated(self._path):
      return self._f.seek(offset, whence)

  def tell(self):
    return self._f.tell()

  def readable(self):
    return self._f.readable()

  def writable(self):
    return self._f.writable()

  def seekable(self):
    return self._f.seekable()

  def close(self):
    if not self.closed:
      with translated(self._path):
        self._f.close()
    super().close()


class _RangeFile(io.RawIOBase):
  """A read-only, seekable file whose every read is one exact ranged request (`read_range`)."""

  def __init__(self, path, length):
    super().__init__()
    self._path, self._length, self._position = path, length, 0

  def read(self, size=-1):
    if size is None or size < 0:
      size = self._length - self._position
    data = read_range(self._path, self._position, min(size, self._length - self._position))
    self._position += len(data)
    return data

  def readinto(self, buffer):
    data = self.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def seek(self, offset, whence=io.SEEK_SET):
    base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
    self._position = base + offset
    return self._position

  def tell(self):
    return self._position

  def readable(self):
    return True

  def seekable(self):
    return True
