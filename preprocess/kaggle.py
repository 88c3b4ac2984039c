"""Kaggle's "ImageNet Object Localization Challenge" layout, extracted or as its single .zip.

Images are under `ILSVRC/Data/CLS-LOC/`: `train/<wnid>/*.JPEG`, a flat `val/` labelled by
`LOC_val_solution.csv` (`ImageId,PredictionString`, the WNID being the prediction string's first
token), and an unlabelled `test/`, which is ignored. Canonical paths drop the prefix, so an image is
`train/<wnid>/<file>` or `val/<file>` whichever form it came in.
"""

import collections
import csv
import io
import posixpath
import zipfile

from preprocess import archives
from preprocess import sources

DATA_PREFIX = "ILSVRC/Data/CLS-LOC/"
SOLUTION = "LOC_val_solution.csv"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
FOLDERS = {"train": "train", "validation": "val", "test": "test"}
_METHODS = {zipfile.ZIP_STORED: "zip0", zipfile.ZIP_DEFLATED: "zip8"}


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


def index_zip(path):
  """Indexes the competition's zip from its central directory.

  Returns:
    (entries, files): entries maps ("train", wnid) or ("validation", None) to a list of index
    entries; files maps the basenames of the label files found to their text. Test images are
    counted under ("test", None) only, as they have no labels.

  Raises:
    archives.ArchiveError: not a readable zip, or a member compressed in a way not supported.
  """
  entries, files = collections.defaultdict(list), {}
  try:
    with archives.open_range(path) as f, zipfile.ZipFile(f) as z:
      for info in z.infolist():
        if info.is_dir():
          continue
        base = posixpath.basename(info.filename)
        if base in (SOLUTION, SYNSET_MAPPING):
          files[base] = z.read(info).decode("utf-8")
          continue
        if not info.filename.startswith(DATA_PREFIX):
          continue
        folder, *rest = info.filename[len(DATA_PREFIX):].split("/")
        split = next((s for s, f in FOLDERS.items() if f == folder), None)
        if split is None:
          continue
        key = (split, rest[0] if split == "train" and len(rest) > 1 else None)
        canonical = "/".join([folder, *rest])
        if info.compress_type not in _METHODS:
          raise archives.ArchiveError(f"{path}: {info.filename} uses compression method "
                                      f"{info.compress_type}; only stored and deflated are read")
        flat = len(rest) == (2 if split == "train" else 1)
        kind = "image" if flat and not sources.is_ignored(base) else "ignored"
        entries[key].append((kind, canonical, (path, info.header_offset, info.compress_size,
                                               _METHODS[info.compress_type])))
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise archives.ArchiveError(f"{path}: not a readable zip ({e})") from None
  return entries, files
