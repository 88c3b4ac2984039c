"""Finding out what an input tree holds: splits, layouts, classes, names and ground-truth labels.

Runs on the launching machine before the pipeline starts, so that a wrong folder or a bad ground-truth
file stops the job at once with one line naming the file. Everything goes through `paths`, so
`--input_dir` may be local or any filesystem Beam knows (gs://, s3://, ...).

Layouts understood for each split folder (`train/`, `val/` or `validation/`, `test/`):
  folders: `<split>/<wnid>/<image>`, the ImageFolder layout (what `valprep.sh` produces);
  flat:    `<split>/<image>` plus a ground-truth file with one label per line in sorted filename
           order, each an ILSVRC ID (mapped to a WNID through the devkit's `meta.mat`) or a WNID.
Labels are always the position of the WNID in the sorted list of training WNIDs.
"""

import dataclasses
import posixpath
import re

from absl import logging

from preprocess import paths
from preprocess.paths import join

SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test",)}
# Names that are clearly not images: counted as ignored rather than reported as broken images.
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_IGNORED_SUFFIXES = {
    ".txt", ".md", ".json", ".xml", ".csv", ".html", ".htm", ".py", ".sh", ".mat", ".db", ".ini",
    ".log", ".tar", ".zip", ".pdf"
}
_DEVKIT_DIRS = ("", "devkit/data/", "ILSVRC2012_devkit_t12/data/", "ILSVRC2010_devkit/data/",
                "ILSVRC2010_devkit-1.0/data/")


class InputError(ValueError):
  """The input tree or one of its metadata files is not usable; the message names the file."""


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """One split as found in the input.

  Attributes:
    name: "train", "validation" or "test".
    folder: the split's canonical folder, e.g. "val": image paths start with it.
    layout: "folders" or "flat".
    candidates: canonical relative paths of the files that may be images.
    ignored: canonical relative paths of files that are clearly not images.
    ground_truth: for the flat layout, the WNID of each candidate in sorted filename order.
    units: the pipeline's listing units: ("folder", folder under the input, canonical folder) or
      ("index", index file, canonical folder).
    source: how the split was given, e.g. "extracted" or "tar ILSVRC2012_img_val.tar".
    read_from: the archives its images are read from, or the folder its canonical paths start in
      when that is not the input (`tree_root`); empty for an extracted tree.
    listed_ground_truth: for a flat split narrowed to a subset (`subsets`), the WNID of every image
      its listing finds, in listing order, as the listing workers label them; else empty and
      `ground_truth` is that list.
  """
  name: str
  folder: str
  layout: str
  candidates: tuple
  ignored: tuple
  ground_truth: tuple = ()
  units: tuple = ()
  source: str = "extracted"
  read_from: tuple = ()
  listed_ground_truth: tuple = ()


def is_ignored(relative_path):
  """True for files that are clearly not images (hidden files, text, metadata) or nested deeper."""
  name = posixpath.basename(relative_path).lower()
  return (name.startswith(".") or name in _IGNORED_NAMES or
          posixpath.splitext(name)[1] in _IGNORED_SUFFIXES)


def tree_root(input_dir, folder, canonical):
  """Where canonical paths start in a tree whose folders are not canonical: Kaggle's
  `ILSVRC/Data/CLS-LOC` for its `ILSVRC/Data/CLS-LOC/train` (canonical `train`). The file of
  canonical path `train/<wnid>/<file>` is `join(tree_root(...), "train/<wnid>/<file>")`."""
  if not folder.endswith(canonical):
    raise ValueError(f"{folder} does not end with its canonical folder {canonical}")
  return join(input_dir, folder[:len(folder) - len(canonical)].rstrip("/"))


def list_files(directory):
  """Relative paths (with "/") of every file below `directory`, sorted."""
  return [path for path, _ in list_files_with_sizes(directory)]


def list_files_with_sizes(directory):
  """(relative path with "/", size in bytes) of every file below `directory`, sorted by path."""
  prefix = directory.rstrip("/") + "/"
  return sorted((m.path[len(prefix):].replace("\\", "/"), m.size_in_bytes)
                for m in paths.list_files(directory))


def find_split_folder(input_dir, split):
  """The folder name of `split` in `input_dir`, or None."""
  for folder in SPLIT_FOLDERS[split]:
    if list_files_exist(join(input_dir, folder)):
      return folder
  return None


def list_files_exist(directory):
  return paths.has_files(directory)


def plan_split(input_dir, split, folder, classes=None, labeler=None, canonical=None,
               source="extracted"):
  """Lists one split folder and works out its layout and labels.

  Args:
    input_dir: the input root.
    split: "train", "validation" or "test".
    folder: the split's folder under input_dir.
    classes: the sorted training WNIDs (None while planning the training split itself).
    labeler: for a flat folder, a function (sorted paths, classes) -> their WNIDs.
    canonical: the split's folder in canonical paths, if not `folder` (Kaggle's tree).
    source: the description of the input form for the manifest.

  Returns:
    A `SplitPlan`.

  Raises:
    InputError: naming the folder or file that is wrong.
  """
  root = join(input_dir, folder)
  canonical = canonical or folder
  ignored, flat, nested = [], [], []
  for relative in list_files(root):
    depth = relative.count("/")
    path = f"{canonical}/{relative}"
    if is_ignored(relative) or depth > 1:
      ignored.append(path)
    elif depth == 0:
      flat.append(path)
    else:
      nested.append(path)
  if flat and nested:
    raise InputError(f"{root}: holds both image files ({posixpath.basename(flat[0])}) and class "
                     "folders; expected one layout")
  if nested:
    wnids = sorted({p.split("/")[1] for p in nested})
    if classes is not None:
      unknown = [w for w in wnids if w not in classes]
      if unknown:
        raise InputError(f"{join(root, unknown[0])}: class folder {unknown[0]!r} is not a "
                         f"training class ({len(unknown)} unknown in {folder}/)")
    units = tuple(("folder", f"{folder}/{w}", f"{canonical}/{w}") for w in wnids)
    plan = SplitPlan(split, canonical, "folders", tuple(nested), tuple(ignored), (), units, source)
  elif not flat:
    raise InputError(f"{root}: no image files or class folders found")
  else:
    plan = flat_plan(split, canonical, flat, ignored, classes, labeler,
                     (("folder", folder, canonical),), source, root)
  if canonical == folder:
    return plan
  return dataclasses.replace(plan, read_from=(tree_root(input_dir, folder, canonical),))


def flat_plan(split, canonical, images, ignored, classes, labeler, units, source, where,
              partial=False):
  """The plan of a flat split: its images labelled by `labeler`, in sorted filename order."""
  if split == "train":
    raise InputError(f"{where}: training images must be in class folders (train/<wnid>/*.JPEG)")
  if labeler is None:
    raise InputError(f"{where}: a flat {split} split needs its ground-truth file "
                     f"(--{split}_ground_truth)")
  images = sorted(images)
  labels = labeler(images, classes, partial)
  return SplitPlan(split, canonical, "flat", tuple(images), tuple(ignored), tuple(labels), units,
                   source)


def ground_truth_labeler(path, id_to_wnid, text=None):
  """A labeler from a ground-truth file (read from `path` unless its `text` is given).

  The labeler takes (sorted images, classes, partial); with `partial` (a split read from an
  archive, which may be truncated) images missing at the end are allowed when every name carries
  its ILSVRC number (`ILSVRC2012_val_00000001.JPEG` is line 1).
  """

  def label(images, classes, partial=False):
    content = read_text(path) if text is None else text
    wnids = parse_ground_truth(content, path, None if partial else len(images), classes, id_to_wnid)
    numbers = [re.search(r"_(\d{8})\.[^/]*$", image) for image in images]
    if len(wnids) == len(images) or not all(numbers):
      if len(wnids) != len(images):
        raise InputError(f"{path}: {len(wnids)} lines, but the split holds {len(images)} images")
      return wnids
    numbers = [int(number.group(1)) for number in numbers]
    if max(numbers) > len(wnids):
      raise InputError(f"{path}: {len(wnids)} lines, but an image is numbered {max(numbers)}")
    logging.warning("%s: %d lines, %d images in the archive: %d are missing (truncated archive?)",
                    path, len(wnids), len(images),
                    len(wnids) - len(images))
    return [wnids[number - 1] for number in numbers]

  return label


def parse_ground_truth(text, path, num_images, classes, id_to_wnid):
  """The WNIDs of a ground-truth file: one ILSVRC ID or WNID per line, in sorted filename order."""
  lines = text.splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  if num_images is not None and len(lines) != num_images:
    raise InputError(f"{path}: {len(lines)} lines, but the image folder holds {num_images} images")
  wnids = []
  for number, line in enumerate(lines, 1):
    token = line.strip()
    if re.fullmatch(r"\d+", token):
      if id_to_wnid is None:
        raise InputError(f"{path}:{number}: ILSVRC IDs need the devkit's meta.mat (--devkit_meta)")
      if int(token) not in id_to_wnid:
        raise InputError(f"{path}:{number}: ILSVRC ID {token} is not a leaf class of the devkit "
                         f"(1..{len(id_to_wnid)})")
      token = id_to_wnid[int(token)]
    if token not in classes:
      raise InputError(f"{path}:{number}: WNID {token!r} has no training folder")
    wnids.append(token)
  return wnids


def read_text(path):
  try:
    return paths.read(path).decode("utf-8")
  except OSError as e:
    raise InputError(str(e)) from None
  except UnicodeDecodeError as e:
    raise InputError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None


def find_ground_truth(input_dir, split):
  """The devkit's ground-truth file for a flat split at its usual places, or None."""
  return _first_existing(input_dir, [
      f"{d}ILSVRC{year}_{split}_ground_truth.txt" for d in _DEVKIT_DIRS for year in ("2012", "2010")
  ])


def find_names_file(input_dir):
  """A `<wnid> <words>` class-names file at the input's root, or None."""
  return _first_existing(input_dir, ("synset_words.txt", "LOC_synset_mapping.txt"))


def find_meta_file(input_dir):
  """The devkit's meta.mat at its usual places, or None."""
  return _first_existing(input_dir, [f"{d}meta.mat" for d in _DEVKIT_DIRS])


def _first_existing(input_dir, relatives):
  for relative in relatives:
    path = join(input_dir, relative)
    if paths.exists(path):
      return path
  return None


def read_class_names(path, text=None):
  """WNID -> human-readable name from a `<wnid> <words>` text file (or its `text`)."""
  names = {}
  for number, line in enumerate((read_text(path) if text is None else text).splitlines(), 1):
    if not line.strip():
      continue
    wnid, _, words = line.strip().partition(" ")
    if not re.fullmatch(r"n\d{8}", wnid):
      raise InputError(f"{path}:{number}: expected '<wnid> <names>', got {line.strip()[:60]!r}")
    names[wnid] = words.strip()
  return names
