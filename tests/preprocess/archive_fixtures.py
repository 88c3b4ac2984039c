"""Packing a generated sample tree the ways ImageNet is downloaded: ILSVRC-2012 and -2010 tars,
Kaggle's extracted tree and its zip. Only the standard library's tarfile and zipfile are used."""

import io
import os
import shutil
import tarfile
import zipfile


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _files(folder):
  return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def pack_train_tar(tree, path):
  """A tar of `<wnid>.tar` members, each holding that class's files at its top level."""
  with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as outer:
    for wnid in _files(os.path.join(tree, "train")):
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in _files(os.path.join(tree, "train", wnid)):
          _add(tar, name, _read(os.path.join(tree, "train", wnid, name)))
      _add(outer, f"{wnid}.tar", inner.getvalue())


def pack_flat_tar(tree, folder, path, prefix=""):
  """A tar of a flat split folder's files (under `prefix`, as ILSVRC-2010's `val/...`)."""
  with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
    for name in _files(os.path.join(tree, folder)):
      _add(tar, prefix + name, _read(os.path.join(tree, folder, name)))


def pack_devkit(tree, path, top):
  """A .tar.gz holding `<top>/data/` with meta.mat and the ground-truth files of the tree."""
  with tarfile.open(path, "w:gz") as tar:
    _add(tar, f"{top}/COPYING", b"devkit licence\n")
    for name in _files(os.path.join(tree, "devkit", "data")):
      _add(tar, f"{top}/data/{name}", _read(os.path.join(tree, "devkit", "data", name)))


def ilsvrc2012(tree, out):
  """The 2012 release: train tar of class tars, flat val tar, devkit .tar.gz; nothing else."""
  os.makedirs(out)
  pack_train_tar(tree, os.path.join(out, "ILSVRC2012_img_train.tar"))
  pack_flat_tar(tree, "val", os.path.join(out, "ILSVRC2012_img_val.tar"))
  pack_devkit(tree, os.path.join(out, "ILSVRC2012_devkit_t12.tar.gz"), "ILSVRC2012_devkit_t12")
  return out


def ilsvrc2010(tree, out):
  """The 2010 shapes: train, val and test tars (members under val/ and test/), the devkit without
  the test labels, and the separately published test ground truth at the root."""
  os.makedirs(out)
  pack_train_tar(tree, os.path.join(out, "ILSVRC2010_images_train.tar"))
  pack_flat_tar(tree, "val", os.path.join(out, "ILSVRC2010_images_val.tar"), "val/")
  pack_flat_tar(tree, "test", os.path.join(out, "ILSVRC2010_images_test.tar"), "test/")
  data = os.path.join(tree, "devkit", "data")
  staging = os.path.join(out + "_devkit", "devkit", "data")
  os.makedirs(staging)
  for name in _files(data):
    target = out if name.endswith("test_ground_truth.txt") else staging
    shutil.copy(os.path.join(data, name), os.path.join(target, name.replace("2012", "2010")))
  pack_devkit(out + "_devkit", os.path.join(out, "ILSVRC2010_devkit-1.0.tar.gz"), "devkit-1.0")
  return out


def kaggle_tree(tree, out, class_of):
  """Kaggle's extracted layout; `class_of` maps each validation file name to its WNID."""
  data = os.path.join(out, "ILSVRC", "Data", "CLS-LOC")
  shutil.copytree(os.path.join(tree, "train"), os.path.join(data, "train"))
  shutil.copytree(os.path.join(tree, "val"), os.path.join(data, "val"))
  os.makedirs(os.path.join(data, "test"))
  shutil.copy(os.path.join(data, "val",
                           _files(os.path.join(data, "val"))[0]),
              os.path.join(data, "test", "ILSVRC2012_test_00000001.JPEG"))
  rows = "".join(f"{os.path.splitext(name)[0]},{class_of[name]} 1 2 3 4\n"
                 for name in reversed(_files(os.path.join(tree, "val"))))
  with open(os.path.join(out, "LOC_val_solution.csv"), "w") as f:
    f.write("ImageId,PredictionString\n" + rows)
  shutil.copy(os.path.join(tree, "synset_words.txt"), os.path.join(out, "LOC_synset_mapping.txt"))
  return out


def kaggle_zip(extracted, path, compression=zipfile.ZIP_DEFLATED):
  """The competition's single zip of the extracted layout (deflated, as zip does by default)."""
  with zipfile.ZipFile(path, "w", compression) as z:
    for folder, _, names in sorted(os.walk(extracted)):
      for name in sorted(names):
        full = os.path.join(folder, name)
        z.write(full, os.path.relpath(full, extracted).replace(os.sep, "/"))
  return path
