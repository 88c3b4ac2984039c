"""ImageNetV2 as stage 1's input: an evaluation-only dataset labelled with a training dataset's classes.

  python -m preprocess.build_shards --input_dir DIR --output_dir DIR --classes_from /data/shards

`--input_dir` is one variant's released folder (`imagenetv2-matched-frequency-format-val/<n>/*.jpeg`,
likewise `threshold0.7` and `top-images`), a folder holding one such folder, or a folder holding its
tar once decompressed (`gunzip imagenetv2-matched-frequency.tar.gz`), read in place by byte ranges.
Folder `<n>` holds the images of the class at position n of the sorted WNIDs, which are the
classes of `--classes_from`'s manifest. `<n>` is read as an integer: an ImageFolder-style loader
that sorts the folder names as strings puts "10" before "2" and mislabels 990 classes
(ImageNetV2 issue #10).

Every image is listed by the launcher into one index (10,000 entries) under its canonical path, the
path inside the release (`imagenetv2-matched-frequency-format-val/<n>/<sha1>.jpeg`), so the folder
and the tar give byte-identical shards. The split is `imagenetv2.SPLIT` ("test"), labelled through
a flat ground-truth list in sorted path order; the dataset has no training split and carries the
training dataset's `mean.npy` and colour statistics, which are what a model trained on it subtracts.
"""

import io
import posixpath
import re

import numpy as np
from absl import logging

from common import imagenetv2
from common import manifest as manifest_lib
from preprocess import paths
from preprocess.inputs import archives
from preprocess.inputs import sources
from preprocess.paths import join

_CLASS_FOLDER = re.compile(r"\d+")
# ImageNetV2's folders number ILSVRC-2012's classes.
ILSVRC_CLASSES = 1000


def read_training_manifest(classes_from):
  """The parsed manifest of the dataset named by --classes_from (no TensorFlow: `paths`)."""
  path = join(classes_from.rstrip("/"), manifest_lib.MANIFEST_NAME)
  try:
    data = manifest_lib.parse(paths.read(path), path)
  except paths.Missing:
    raise sources.InputError(f"--classes_from {classes_from}: no {manifest_lib.MANIFEST_NAME} "
                             "(name a dataset built by preprocess.build_shards)") from None
  except OSError as e:
    raise sources.InputError(f"--classes_from {classes_from}: {e}") from None
  except manifest_lib.ManifestError as e:
    raise sources.InputError(f"--classes_from {classes_from}: {e}") from None
  if not data["classes"] or not data["stats"]:
    raise sources.InputError(f"--classes_from {classes_from}: not a training dataset (no classes "
                             "or no training statistics); name the dataset the model trained on")
  return data


def training_stats(classes_from):
  """(mean image, stats) of the training dataset: what a model trained on it subtracts.

  Returns:
    float32 `[size, size, 3]` and the manifest's `stats` dict.
  """
  data = read_training_manifest(classes_from)
  path = join(classes_from.rstrip("/"), data["stats"]["mean_file"])
  try:
    mean = np.load(io.BytesIO(paths.read(path)), allow_pickle=False)
  except (OSError, ValueError) as e:
    raise sources.InputError(f"{path}: cannot read the training mean image ({e})") from None
  return mean.astype(np.float32), dict(data["stats"])


def find_source(input_dir):
  """(variant, "folder" or "tar", path) of the one ImageNetV2 variant under `input_dir`."""
  variant = imagenetv2.variant_of_folder(posixpath.basename(input_dir))
  if variant:
    return variant, "folder", input_dir
  found = [(v, "folder", join(input_dir, imagenetv2.folder_name(v)))
           for v in imagenetv2.VARIANTS
           if sources.list_files_exist(join(input_dir, imagenetv2.folder_name(v)))]
  for match in paths.list_files(input_dir, "*"):
    try:
      head = paths.read_range(match.path, 0, archives.BLOCK)
    except IsADirectoryError:  # a folder, on a local disk
      continue
    if archives.compression(head) and "imagenetv2" in posixpath.basename(match.path):
      raise sources.InputError(f"{match.path}: a compressed archive cannot be read by byte "
                               "ranges; decompress it first (gunzip), it is read in place after")
    if archives.looks_like_tar(head):
      variant = _tar_variant(match.path)
      if variant:
        found.append((variant, "tar", match.path))
  if not found:
    raise sources.InputError(
        f"--input_dir {input_dir}: no ImageNetV2 folder ({imagenetv2.folder_name('<variant>')}/"
        f"<n>/*.jpeg, variant one of {', '.join(imagenetv2.VARIANTS)}) nor its tar; "
        "--classes_from builds only ImageNetV2")
  if len(found) > 1:
    raise sources.InputError(f"--input_dir {input_dir}: holds both {found[0][2]} and "
                             f"{found[1][2]}; build each ImageNetV2 variant on its own")
  return found[0]


def _tar_variant(path):
  """The variant whose folder a tar's first member is in, or None."""
  with archives.open_range(path) as f:
    for name, _, _, _ in archives.tar_members(f, path, 0, archives.file_size(path)):
      return imagenetv2.variant_of_folder(posixpath.normpath(name).split("/")[0])
  return None


def _entries(form, where):
  """Index entries (kind, canonical path, location) of every file of the folder or tar."""
  if form == "folder":
    parent, base = posixpath.split(where)
    # The canonical path is the file's path under the folder's parent: read as a loose file there.
    # The size is what a resumed build compares (`resume.inputs_digest`); reads ignore it.
    return [("ignored" if sources.is_ignored(relative) else "image", f"{base}/{relative}",
             (parent, 0, size, "file")) for relative, size in sources.list_files_with_sizes(where)]
  entries = []
  with archives.open_range(where) as f:
    for name, offset, size, truncated in archives.tar_members(f, where, 0,
                                                              archives.file_size(where)):
      kind = ("ignored" if sources.is_ignored(name) else "truncated" if truncated else "image")
      entries.append((kind, posixpath.normpath(name), (where, offset, size, "tar")))
  return entries


def class_number(path, folder, where):
  """The class position of an image at canonical `path` (`<folder>/<n>/<file>`), as an integer.

  Returns:
    The integer n, or None for a file that is not in a class folder (ignored).

  Raises:
    sources.InputError: a class folder whose name is not a number.
  """
  parts = path.split("/")
  if len(parts) != 3 or parts[0] != folder:
    return None
  if not _CLASS_FOLDER.fullmatch(parts[1]):
    raise sources.InputError(f"{where}: folder {parts[0]}/{parts[1]} is not a class number "
                             "(ImageNetV2 numbers its class folders 0..999)")
  return int(parts[1])


def plan_input(options, indexer):
  """Plans an ImageNetV2 build; returns what `build.plan_input` does: (synsets, names, [plan], notes).

  Raises:
    sources.InputError: flags that belong to ImageNet's own splits, no or two variants, a folder
      that is not a class number or a class the training dataset does not have.
  """
  given = [f"--{split}_archive" for split, path in options.archives.items() if path]
  given += [f"--{split}_ground_truth" for split, path in options.ground_truth.items() if path]
  given += [
      f"--{flag}" for flag in ("devkit_meta", "class_names", "devkit_archive")
      if getattr(options, flag)
  ]
  if given:
    raise sources.InputError(f"{given[0]} cannot be combined with --classes_from (an ImageNetV2 "
                             "build takes its classes from that dataset)")
  training = read_training_manifest(options.classes_from)
  synsets = [c["synset"] for c in training["classes"]]
  if len(synsets) != ILSVRC_CLASSES:
    logging.warning(
        "--classes_from %s has %d classes, not ILSVRC-2012's %d: ImageNetV2's folder n "
        "is read as its class n", options.classes_from, len(synsets), ILSVRC_CLASSES)
  input_dir = options.input_dir.rstrip("/")
  variant, form, where = find_source(input_dir)
  folder = imagenetv2.folder_name(variant)
  images, ignored, wnids = [], [], {}
  entries = _entries(form, where)
  for kind, path, _ in entries:
    number = class_number(path, folder, where) if kind != "ignored" else None
    if number is None:
      ignored.append(path)
      continue
    if number >= len(synsets):
      raise sources.InputError(f"{where}: folder {folder}/{number} has no class in --classes_from "
                               f"{options.classes_from}, which has {len(synsets)} (0..."
                               f"{len(synsets) - 1})")
    images.append(path)
    wnids[path] = synsets[number]
  if not images:
    raise sources.InputError(f"{where}: no images in its class folders")
  keep = set(images)
  index_file = indexer.write([entry for entry in entries if entry[1] in keep])
  images = sorted(images)
  plan = sources.SplitPlan(imagenetv2.SPLIT, folder, "flat", tuple(images), tuple(sorted(ignored)),
                           tuple(wnids[path] for path in images), (("index", index_file, folder),),
                           imagenetv2.input_form(variant, form, where),
                           (posixpath.dirname(where),) if form == "folder" else (where,))
  notes = [
      f"ImageNetV2 {imagenetv2.VARIANTS[variant]}: an evaluation-only dataset ({plan.name} "
      f"split) in the classes of {options.classes_from}; score it with python -m "
      f"train.evaluate --shards {options.output_dir} --model_dir DIR"
  ]
  names = {c["synset"]: c["name"] for c in training["classes"]}
  return synsets, names, [plan], notes
