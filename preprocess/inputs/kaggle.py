"""Kaggle's "ImageNet Object Localization Challenge" layout, extracted or as its single .zip.

Images are under `ILSVRC/Data/CLS-LOC/`: `train/<wnid>/*.JPEG`, a flat `val/` labelled by
`LOC_val_solution.csv` (`ImageId,PredictionString`, the WNID being the prediction string's first
token), and an unlabelled `test/`, which is ignored. Canonical paths drop the prefix, so an image is
`train/<wnid>/<file>` or `val/<file>` whichever form it came in.
"""

import collections
import csv
import dataclasses
import io
import posixpath

from preprocess.inputs import archives
from preprocess.inputs import locations
from preprocess.inputs import sources
from preprocess.inputs import zips

DATA_PREFIX = "ILSVRC/Data/CLS-LOC/"
SOLUTION = "LOC_val_solution.csv"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
FOLDERS = {"train": "train", "validation": "val", "test": "test"}
_METHODS = {0: "zip0", 8: "zip8"}  # stored, deflated
# A key's entries the launcher keeps before a change of key writes them out (see `index_zip`).
_FLUSH_AT = 1000


def parse_solution(text, name):
  """{image id: WNID} from LOC_val_solution.csv."""
  labels = {}
  rows = csv.reader(io.StringIO(text))
  header = next(rows, None)
  if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
    raise sources.InputError(f"{name}: expected the header 'ImageId,PredictionString'")
  for number, row in enumerate(rows, 2):
    if len(row) < 2 or not row[1].split():
      raise sources.InputError(f"{name}:{number}: expected '<image id>,<wnid> ...'")
    labels[row[0].strip()] = row[1].split()[0]
  return labels


def solution_labeler(text, name):
  """A labeler for a flat split: sorted canonical paths -> their WNIDs, from the solution file."""
  labels = parse_solution(text, name)

  def label(paths, classes, partial=False):
    del partial  # rows are matched by image id, so missing images need no special case
    wnids = []
    for path in paths:
      image_id = posixpath.splitext(posixpath.basename(path))[0]
      if image_id not in labels:
        raise sources.InputError(f"{name}: no row for {image_id} ({path})")
      if labels[image_id] not in classes:
        raise sources.InputError(f"{name}: {image_id}: WNID {labels[image_id]!r} has no training "
                                 "folder")
      wnids.append(labels[image_id])
    return wnids

  return label


@dataclasses.dataclass
class ZipIndex:
  """What indexing the competition's zip found.

  Attributes:
    index_files: ("train", wnid) or ("validation", None) -> the index files of its images.
    label_files: basename -> text of the label files found (`SOLUTION`, `SYNSET_MAPPING`).
    has_test: whether it holds Kaggle's unlabelled test images (which are not indexed).
  """
  index_files: dict
  label_files: dict
  has_test: bool


def index_zip(path, write):
  """Indexes the competition's zip from its central directory, streamed (see `zips`).

  Entries go to index files through `write` (entries -> index file) as the directory is read: a
  class's entries are written once the directory moves on to another key, so the launcher holds a
  class at a time, not the 1.33M entries, when the zip lists each folder's files together (as zip
  tools write them); in any other order it holds at most `_FLUSH_AT` entries per key.

  Returns:
    A `ZipIndex`; its `index_files` is empty for a zip that is not Kaggle's.

  Raises:
    archives.ArchiveError: not a readable zip, or a member encrypted or compressed in a way not
      supported.
  """
  pending, index_files, label_files = collections.defaultdict(list), collections.defaultdict(
      list), {}
  previous, has_test = None, False
  try:
    for name, offset, size, method, encrypted in zips.members(path):
      base = posixpath.basename(name)
      if base in (SOLUTION, SYNSET_MAPPING):
        label_files[base] = _read_member(name, _location(path, name, offset, size, method,
                                                         encrypted))
        continue
      if not name.startswith(DATA_PREFIX):
        continue
      folder, *rest = name[len(DATA_PREFIX):].split("/")
      split = next((s for s, f in FOLDERS.items() if f == folder), None)
      has_test = has_test or split == "test"
      if split in (None, "test"):
        continue
      key = (split, rest[0] if split == "train" and len(rest) > 1 else None)
      if key != previous and len(pending.get(previous, ())) >= _FLUSH_AT:
        index_files[previous].append(write(pending.pop(previous)))
      previous = key
      flat = len(rest) == (2 if split == "train" else 1)
      kind = "image" if flat and not sources.is_ignored(base) else "ignored"
      pending[key].append(
          (kind, "/".join([folder, *rest]), _location(path, name, offset, size, method, encrypted)))
  except OSError as e:
    raise archives.ArchiveError(f"{path}: not a readable zip ({e})") from None
  for key, entries in pending.items():
    index_files[key].append(write(entries))
  return ZipIndex(dict(index_files), label_files, has_test)


def _location(path, name, offset, size, method, encrypted):
  """A member's location for `locations.Reader`; refuses what it could not read."""
  if encrypted or method not in _METHODS:
    how = "encrypted" if encrypted else f"compressed with method {method}"
    raise archives.ArchiveError(f"{path}: {name} is {how}; only stored and deflated members are "
                                "read")
  return path, offset, size, _METHODS[method]


def _read_member(name, location):
  """The text of a small member (a label file)."""
  reader = locations.Reader("", location[:1])
  try:
    return reader.read(name, (0, *location[1:])).decode("utf-8")
  except (ValueError, OSError) as e:  # errors.SkipImage (truncated, not inflatable), not UTF-8
    raise archives.ArchiveError(f"{location[0]}: cannot read {name}: {e}") from None
  finally:
    reader.close()
