"""Reading ImageNet's archives as downloaded: tar headers only to index, byte ranges to read.

A tar is a sequence of 512-byte headers, each followed by its member's data padded to 512 bytes, with
no central directory; so indexing reads each header and seeks past the data, and an image is later
read as one byte range (archive, offset, size) through `paths`: a seek on a local disk, one ranged
request on GCS and S3. The ILSVRC training archive is a tar of per-class tars; an inner tar is indexed
as the range of the outer file it occupies, so nothing is ever extracted or copied.

Zip members (Kaggle's single download) are random-access too: the central directory gives each
member's local header offset; the reader skips that header and inflates a deflated member.

Every index entry is (kind, canonical path, location); kind is `image`, `truncated` (its bytes run
past the end of the archive: skipped with that reason when written) or `ignored` (not an image).
A location is (archive, offset, size, method), method `tar`, `zip0` (stored) or `zip8` (deflated).
The job's entries carry the archive as its index in `BuildConfig.read_from` instead, and use two more
methods: `truncated`, and `file` for a whole loose file at `join(read_from[n], canonical path)`, as
in Kaggle's tree.
"""

import json
import posixpath
import re
import tarfile
import zlib

from preprocess import paths
from preprocess.inputs import sources

BLOCK = 512
_COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                     (b"\x28\xb5\x2f\xfd", "zstd"))
_ZIP_MAGIC = b"PK\x03\x04"
CLASS_TAR = re.compile(r"^n\d{8}\.tar$")
_ROLE_PATTERNS = (("validation", "_val_"), ("test", "_test_"), ("train_class", r"^n\d{8}_"))
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_REGULAR = (b"0", b"\0", b"7")
_LINKS = (b"1", b"2")  # hard link, symbolic link


class ArchiveError(sources.InputError):
  """A damaged or unreadable archive; the message names it (and the offset of a bad header)."""


def open_range(path):
  """The archive as stored (offsets are into its raw bytes), for reads at offsets."""
  return paths.open_ranges(path)


def file_size(path):
  return paths.size(path)


def compression(head):
  """The compression a file's first bytes announce, or None."""
  return next((name for magic, name in _COMPRESSED_MAGIC if head.startswith(magic)), None)


def looks_like_tar(head):
  return len(head) >= BLOCK and any(head[:100]) and _checksum_ok(head[:BLOCK])


def looks_like_zip(head):
  return head.startswith(_ZIP_MAGIC)


def _checksum_ok(header):
  try:
    stored = int(header[148:156].split(b"\0")[0].strip() or b"0", 8)
  except ValueError:
    return False
  unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
  if stored == unsigned:
    return True
  # Some old tars summed signed bytes; tarfile accepts both, so do we. (Counting the high bytes is
  # the slow part of a check, which matters at 1.28M headers, so it is done only when needed.)
  return stored == unsigned - 256 * sum(b >= 128 for b in header[:148] + header[156:])


def _number(field):
  if field[0] & 0x80:  # GNU base-256, for members of 8 GiB and more
    return int.from_bytes(field[1:], "big")
  return int(field.split(b"\0")[0].strip() or b"0", 8)


def _pax_value(data, wanted):
  for record in data.split(b"\n"):
    _, _, keyvalue = record.partition(b" ")
    key, _, value = keyvalue.partition(b"=")
    if key == wanted:
      return value.decode("utf-8", "replace")
  return None


def tar_members(f, archive, start, end):
  """Yields (name, data offset, size, truncated) of the regular files of a tar, reading headers only.

  A hard or symbolic link to a file stored earlier in the same range is yielded under its own name
  with that file's data (`tar` stores a second name of the same file as a link, with no data): a
  file a user sees in `tar tf` is never silently left out.

  Args:
    f: a seekable binary file.
    archive: the name used in errors.
    start, end: the byte range the tar occupies in `f` (a whole file, or an inner tar's data).

  Raises:
    ArchiveError: a header fails its checksum (names the archive and offset), or a link names a
      file that is not stored before it.
  """
  position, long_name, long_link, stored = start, None, None, {}
  while position + BLOCK <= end:
    f.seek(position)
    header = f.read(BLOCK)
    if len(header) < BLOCK or not any(header):
      return  # the end-of-archive blocks, or the file ends inside a header
    if not _checksum_ok(header):
      raise ArchiveError(f"{archive}: the tar header at byte offset {position} fails its checksum; "
                         "the archive is damaged (download it again)")
    size, kind = _number(header[124:136]), header[156:157]
    data = position + BLOCK
    if kind in (b"L", b"K",
                b"x"):  # GNU long name or link name, or a pax header: for the next member
      f.seek(data)
      payload = f.read(size)
      if kind == b"x":
        long_name, long_link = _pax_value(payload, b"path"), _pax_value(payload, b"linkpath")
      elif kind == b"L":
        long_name = payload.rstrip(b"\0").decode("utf-8", "replace")
      else:
        long_link = payload.rstrip(b"\0").decode("utf-8", "replace")
    elif kind in _REGULAR or kind in _LINKS:
      name = long_name or (header[345:500].rstrip(b"\0") + b"/" * bool(header[345]) +
                           header[:100].rstrip(b"\0")).decode("utf-8", "replace")
      link = long_link or header[157:257].rstrip(b"\0").decode("utf-8", "replace")
      long_name = long_link = None
      if kind in _LINKS:
        target = _link_target(name, link, kind)
        if target not in stored:
          raise ArchiveError(f"{archive}: {name} (byte offset {position}) is a link to {link}, "
                             "which is not stored before it; pack the archive with "
                             "`tar --hard-dereference --dereference`")
        yield (name, *stored[target], False)
      else:
        stored[posixpath.normpath(name)] = (data, size)
        yield name, data, size, data + size > end
        if data + size > end:
          return
      size = 0 if kind in _LINKS else size
    position = data + -(-size // BLOCK) * BLOCK


def _link_target(name, link, kind):
  """The normalised name a hard link (relative to the archive) or symlink (to its folder) names."""
  if kind == b"2":
    link = posixpath.join(posixpath.dirname(name), link)
  return posixpath.normpath(link)


def sniff_tar(path):
  """The role of an uncompressed tar from its first members: train, train_class, validation, test.

  A training archive holds `n<8 digits>.tar` members; a class archive `<wnid>_<n>.JPEG`-like images;
  a validation or test archive flat images whose names hold `_val_` or `_test_`. None otherwise.
  """
  with open_range(path) as f:
    for count, (name, _, _, _) in enumerate(tar_members(f, path, 0, file_size(path))):
      role = image_role(posixpath.basename(name))
      if role:
        return role
      if count >= 16:
        return None
  return None


def image_role(base):
  """What an archive member's name says its archive is: train, train_class, validation, test."""
  if CLASS_TAR.match(base):
    return "train"
  if posixpath.splitext(base)[1].lower() not in _IMAGE_SUFFIXES:
    return None
  return next((role for role, pattern in _ROLE_PATTERNS if re.search(pattern, base)), None)


def class_units(path):
  """(wnid, start, end) of each inner class tar of a training archive, reading outer headers only."""
  size = file_size(path)
  with open_range(path) as f:
    return [(posixpath.basename(name)[:-4], offset, min(offset + length, size))
            for name, offset, length, _ in tar_members(f, path, 0, size)
            if CLASS_TAR.match(posixpath.basename(name))]


def index_tar(path, start, end, folder):
  """Index entries of the images of a tar range, all canonical under `folder` by their file name."""
  entries = []
  with open_range(path) as f:
    for name, offset, size, truncated in tar_members(f, path, start, end):
      canonical = f"{folder}/{posixpath.basename(name)}"
      kind = ("ignored" if sources.is_ignored(posixpath.basename(name)) else
              "truncated" if truncated else "image")
      entries.append((kind, canonical, (path, offset, size, "tar")))
  return entries


def write_index(path, entries=None, error=None):
  paths.write_file(path, json.dumps({"entries": entries or [], "error": error}).encode())


def read_index(path):
  """The entries of one index file; raises `ArchiveError` if indexing it failed."""
  data = json.loads(paths.read(path))
  if data["error"]:
    raise ArchiveError(data["error"])
  return [(kind, canonical, tuple(location)) for kind, canonical, location in data["entries"]]


def index_unit(unit, index_file):
  """Indexes one listing unit (a tar range) into `index_file`, recording a damaged archive's error."""
  path, start, end, folder = unit
  try:
    write_index(index_file, index_tar(path, start, end, folder))
  except ArchiveError as e:
    write_index(index_file, error=str(e))


def read_compressed_tar(path, wanted):
  """{basename: bytes} of the members of a small compressed tar (the devkit) whose basename
  `wanted(basename)` accepts; refuses an image archive, which would need reading whole."""
  found = {}
  try:
    with paths.open_sequential(path) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
      for member in tar:
        base = posixpath.basename(member.name)
        if member.isfile() and image_role(base):
          raise sources.InputError(
              f"{path}: a compressed image archive cannot be read by byte ranges; decompress it "
              f"first (e.g. gunzip), it is read as it is after that")
        if member.isfile() and wanted(base):
          found[base] = tar.extractfile(member).read()
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
    raise ArchiveError(f"{path}: not a readable compressed tar ({e})") from None
  return found
