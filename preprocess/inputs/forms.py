"""What `--input_dir` holds, found by content: extracted trees, Kaggle's layout, ILSVRC archives.

Each split comes from exactly one source:
  extracted  `train/<wnid>/*`, `val/` or `validation/`, `test/` (class folders or flat);
  kaggle     Kaggle's extracted `ILSVRC/Data/CLS-LOC/{train,val}` (its `test/` has no labels);
  tar        an uncompressed tar at the input's root whose members say its role: `n<8 digits>.tar`
             members make a training archive, flat `*_val_*` or `*_test_*` images that split;
  class_tars `n<8 digits>.tar` class archives at the root (the training archive unpacked once);
  zip        Kaggle's competition zip.
A compressed tar at the root is read whole if it is the devkit (meta.mat, ground truth) and refused
if it holds images, which cannot be read by byte ranges. Flags name archives explicitly.
"""

import dataclasses
import posixpath

from absl import logging

from preprocess import paths
from preprocess.inputs import archives
from preprocess.inputs import kaggle
from preprocess.inputs import sources
from preprocess.paths import join

SPLITS = ("train", "validation", "test")
CANONICAL = {"train": "train", "validation": "val", "test": "test"}


@dataclasses.dataclass
class Found:
  """The sources of each split and the metadata found beside them.

  Attributes:
    sources: split -> (form, where): a folder under the input, an archive path, a list of class
      archives, or the zip's path.
    devkit: basename -> bytes of meta.mat and ground-truth files from a devkit archive.
    devkit_path: that archive, for messages.
    kaggle_files: basename -> text of the label files inside Kaggle's zip.
    zip_index_files: the zip's index files, keyed as `kaggle.ZipIndex.index_files`.
    zip_path: that zip, for messages.
    notes: sentences for the summary, e.g. that Kaggle's test/ was ignored.
  """
  sources: dict = dataclasses.field(default_factory=dict)
  devkit: dict = dataclasses.field(default_factory=dict)
  devkit_path: str = None
  kaggle_files: dict = dataclasses.field(default_factory=dict)
  zip_index_files: dict = dataclasses.field(default_factory=dict)
  zip_path: str = None
  notes: list = dataclasses.field(default_factory=list)


def _is_devkit_member(base):
  return base == "meta.mat" or base.endswith("_ground_truth.txt")


def find_inputs(input_dir, named_archives, devkit_archive=None, indexer=None):
  """Finds every split's source.

  Args:
    input_dir: the input root.
    named_archives: split -> archive path given by a flag (wins over what is found).
    devkit_archive: the devkit's .tar.gz given by a flag, or None.
    indexer: an `indexing.ArchiveIndexer`, which writes the index of a zip as it is read; needed
      only if the input holds one.

  Returns:
    A `Found`.

  Raises:
    sources.InputError: two sources for one split, a compressed image archive, a damaged archive.
  """
  for flag, path in [(f"{split}_archive", path) for split, path in named_archives.items()
                    ] + [("devkit_archive", devkit_archive)]:
    if path and not paths.exists(path):
      raise sources.InputError(f"--{flag} {path}: not found")
  candidates = {split: [] for split in SPLITS}
  found = Found()
  for split in SPLITS:
    folder = sources.find_split_folder(input_dir, split)
    if folder:
      candidates[split].append(("extracted", folder))
    kaggle_folder = kaggle.DATA_PREFIX + kaggle.FOLDERS[split]
    if sources.list_files_exist(join(input_dir, kaggle_folder)):
      candidates[split].append(("kaggle", kaggle_folder))
  class_tars = []
  roots = [m.path for m in paths.list_files(input_dir, "*")]
  for path in sorted(roots) + [devkit_archive] * bool(devkit_archive):
    try:
      head = paths.read_range(path, 0, archives.BLOCK)
    except IsADirectoryError:  # a folder, on a local disk
      continue
    if archives.looks_like_zip(head):
      if indexer is None:
        raise ValueError(f"{path}: a zip needs an indexer to be planned")
      index = kaggle.index_zip(path, indexer.write)
      if index.index_files:  # Kaggle's competition zip, not some other zip
        found.zip_index_files, found.kaggle_files, found.zip_path = (index.index_files,
                                                                     index.label_files, path)
      for split in ("train", "validation"):
        if any(key[0] == split for key in index.index_files):
          candidates[split].append(("zip", path))
      if index.has_test:
        found.notes.append(f"Kaggle's {kaggle.DATA_PREFIX}test/ in {path} was ignored: it has no "
                           "labels")
    elif archives.compression(head):
      try:
        members = archives.read_compressed_tar(path, _is_devkit_member)
      except archives.ArchiveError as e:
        logging.warning("ignoring %s", e)
        continue
      if members:
        found.devkit.update(members)
        found.devkit_path = path
    elif archives.looks_like_tar(head):
      role = archives.sniff_tar(path)
      if role == "train_class":
        class_tars.append(path)
      elif role:
        candidates[role].append(("tar", path))
  if class_tars:
    candidates["train"].append(("class_tars", tuple(class_tars)))
  for split in SPLITS:
    if named_archives.get(split):
      candidates[split] = [("tar", named_archives[split])]
    if split == "test" and candidates[split][-1:] == [("kaggle", kaggle.DATA_PREFIX + "test")]:
      candidates[split].pop()
      found.notes.append(f"Kaggle's {kaggle.DATA_PREFIX}test/ was ignored: it has no labels")
    if len(candidates[split]) > 1:
      raise sources.InputError(
          f"--input_dir {input_dir}: {split} is given twice, as {_describe(candidates[split][0])} "
          f"and as {_describe(candidates[split][1])}; remove one or name it with "
          f"--{split}_archive")
    if candidates[split]:
      found.sources[split] = candidates[split][0]
  return found


def _describe(source):
  form, where = source
  if form == "class_tars":
    return f"{len(where)} class archives"
  return f"{form} {where}"


def plan_source(input_dir, found, split, classes, labeler, indexer):
  """The `SplitPlan` of one split from its source; archives are indexed by `indexer`."""
  form, where = found.sources[split]
  canonical = CANONICAL[split]
  if form in ("extracted", "kaggle"):
    return sources.plan_split(input_dir, split, where, classes, labeler,
                              canonical=canonical if form == "kaggle" else None, source=form)
  if form == "zip":
    keys = sorted((key for key in found.zip_index_files if key[0] == split), key=str)
    index_files = [f for key in keys for f in found.zip_index_files[key]]
  else:
    if form == "class_tars":
      units = [(path, 0, archives.file_size(path), f"train/{_class_of(path)}") for path in where]
    elif split == "train":
      units = [
          (where, start, end, f"train/{wnid}") for wnid, start, end in archives.class_units(where)
      ]
    else:
      units = [(where, 0, archives.file_size(where), canonical)]
    index_files = indexer.index(units)
  images, ignored, read_from = [], [], set()
  for index_file in index_files:
    for kind, path, location in archives.read_index(index_file):
      (ignored if kind == "ignored" else images).append(path)
      read_from.add(location[0])
  description = _describe((form, where))
  units = tuple(("index", index_file, canonical) for index_file in index_files)
  if split != "train":
    plan = sources.flat_plan(split, canonical, images, ignored, classes, labeler, units,
                             description, description, partial=True)
  elif not images:
    raise sources.InputError(f"{description}: no training images found")
  else:
    plan = sources.SplitPlan(split, canonical, "folders", tuple(sorted(images)),
                             tuple(sorted(ignored)), (), units, description)
  return dataclasses.replace(plan, read_from=tuple(sorted(read_from)))


def _class_of(path):
  """A class archive's WNID: its name, `n01440764.tar`."""
  name = posixpath.basename(path)
  if not archives.CLASS_TAR.match(name):
    raise sources.InputError(f"{path}: a class archive must be named <wnid>.tar")
  return name[:-4]
