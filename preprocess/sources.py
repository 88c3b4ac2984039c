"""Finding out what an input tree holds: splits, layouts, classes, names and ground-truth labels.

Runs on the launching machine before the pipeline starts, so that a wrong folder or a bad ground-truth
file stops the job at once with one line naming the file. Everything goes through Beam's
`FileSystems`, so `--input_dir` may be local or any filesystem Beam knows (gs://, s3://, ...).

Layouts understood for each split folder (`train/`, `val/` or `validation/`, `test/`):
  folders: `<split>/<wnid>/<image>`, the ImageFolder layout (what `valprep.sh` produces);
  flat:    `<split>/<image>` plus a ground-truth file with one label per line in sorted filename
           order, each an ILSVRC ID (mapped to a WNID through the devkit's `meta.mat`) or a WNID.
Labels are always the position of the WNID in the sorted list of training WNIDs.
"""

import dataclasses
import posixpath
import re

from apache_beam.io.filesystems import FileSystems


SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test",)}
# Names that are clearly not images: counted as ignored rather than reported as broken images.
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_IGNORED_SUFFIXES = {".txt", ".md", ".json", ".xml", ".csv", ".html", ".htm", ".py", ".sh", ".mat",
                     ".db", ".ini", ".log", ".tar", ".zip", ".pdf"}
_DEVKIT_DIRS = ("", "devkit/data/", "ILSVRC2012_devkit_t12/data/", "ILSVRC2010_devkit/data/",
                "ILSVRC2010_devkit-1.0/data/")


class InputError(ValueError):
  """The input tree or one of its metadata files is not usable; the message names the file."""


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """One split as found on disk.

  Attributes:
    name: "train", "validation" or "test".
    folder: the split folder relative to the input directory, e.g. "val".
    layout: "folders" or "flat".
    candidates: relative paths (from the input directory) of the files that may be images.
    ignored: relative paths of files that are clearly not images.
    ground_truth: for the flat layout, the WNID of each candidate in sorted filename order.
  """
  name: str
  folder: str
  layout: str
  candidates: tuple
  ignored: tuple
  ground_truth: tuple = ()


def is_ignored(relative_path):
  """True for files that are clearly not images (hidden files, text, metadata) or nested deeper."""
  name = posixpath.basename(relative_path).lower()
  return (name.startswith(".") or name in _IGNORED_NAMES or
          posixpath.splitext(name)[1] in _IGNORED_SUFFIXES)


def join(base, relative):
  return FileSystems.join(base, *relative.split("/")) if relative else base


def list_files(directory):
  """Relative paths (with "/") of every file below `directory`, sorted."""
  prefix = directory.rstrip("/") + "/"
  matches = FileSystems.match([prefix + "**"])[0].metadata_list
  return sorted(m.path[len(prefix):].replace("\\", "/") for m in matches)


def find_split_folder(input_dir, split):
  """The folder name of `split` in `input_dir`, or None."""
  for folder in SPLIT_FOLDERS[split]:
    if list_files_exist(join(input_dir, folder)):
      return folder
  return None


def list_files_exist(directory):
  return bool(FileSystems.match([directory.rstrip("/") + "/**"], limits=[1])[0].metadata_list)


def plan_split(input_dir, split, folder, classes=None, ground_truth_file=None, id_to_wnid=None):
  """Lists one split and works out its layout and labels.

  Args:
    input_dir: the input root.
    split: "train", "validation" or "test".
    folder: the split's folder under input_dir.
    classes: the sorted training WNIDs (None while planning the training split itself).
    ground_truth_file: for a flat folder, the file with one label per line.
    id_to_wnid: ILSVRC ID to WNID mapping from the devkit, used when the ground truth holds IDs.

  Returns:
    A `SplitPlan`.

  Raises:
    InputError: naming the folder or file that is wrong.
  """
  root = join(input_dir, folder)
  ignored, flat, nested = [], [], []
  for relative in list_files(root):
    depth = relative.count("/")
    path = f"{folder}/{relative}"
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
    return SplitPlan(split, folder, "folders", tuple(nested), tuple(ignored))
  if not flat:
    raise InputError(f"{root}: no image files or class folders found")
  if split == "train":
    raise InputError(f"{root}: training images must be in class folders (train/<wnid>/*.JPEG)")
  if ground_truth_file is None:
    raise InputError(f"{root}: a flat {split} folder needs its ground-truth file "
                     f"(--{split}_ground_truth)")
  labels = read_ground_truth(ground_truth_file, len(flat), classes, id_to_wnid)
  return SplitPlan(split, folder, "flat", tuple(flat), tuple(ignored), tuple(labels))


def read_ground_truth(path, num_images, classes, id_to_wnid):
  """The WNIDs of a ground-truth file: one ILSVRC ID or WNID per line, in sorted filename order."""
  lines = read_text(path).splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  if len(lines) != num_images:
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
    with FileSystems.open(path) as f:
      return f.read().decode("utf-8")
  except (OSError, UnicodeDecodeError) as e:
    raise InputError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None


def find_ground_truth(input_dir, split):
  """The devkit's ground-truth file for a flat split at its usual places, or None."""
  return _first_existing(input_dir, [f"{d}ILSVRC{year}_{split}_ground_truth.txt"
                                     for d in _DEVKIT_DIRS for year in ("2012", "2010")])


def find_names_file(input_dir):
  """A `<wnid> <words>` class-names file at the input's root, or None."""
  return _first_existing(input_dir, ("synset_words.txt", "LOC_synset_mapping.txt"))


def find_meta_file(input_dir):
  """The devkit's meta.mat at its usual places, or None."""
  return _first_existing(input_dir, [f"{d}meta.mat" for d in _DEVKIT_DIRS])


def _first_existing(input_dir, relatives):
  for relative in relatives:
    path = join(input_dir, relative)
    if FileSystems.exists(path):
      return path
  return None


def read_class_names(path):
  """WNID -> human-readable name from a `<wnid> <words>` text file."""
  names = {}
  for number, line in enumerate(read_text(path).splitlines(), 1):
    if not line.strip():
      continue
    wnid, _, words = line.strip().partition(" ")
    if not re.fullmatch(r"n\d{8}", wnid):
      raise InputError(f"{path}:{number}: expected '<wnid> <names>', got {line.strip()[:60]!r}")
    names[wnid] = words.strip()
  return names
