"""The duplicate audit: copies planted among real photographs are found, whatever was done to them,
and no distinct photograph is reported; the same on every input form and runner; the clean build
(`--drop_duplicates=train`) and the audit of an ImageNetV2 build against its training dataset."""

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from PIL import ImageEnhance
from skimage import data as skimage_data

from common import audit as audit_lib
from common import dataset as dataset_lib
from common import manifest as manifest_lib
from preprocess import errors
from preprocess.audit import fingerprint
from preprocess.audit import search
from preprocess.conversion import convert
from tests import helpers
from tests.preprocess import archive_fixtures
from tests.preprocess import colour_photos
from tests.preprocess import test_imagenetv2

CLASSES = ("n01440764", "n02102040", "n02979186")
_GRAY = ("camera", "moon", "coins", "page", "grass", "gravel", "brick")
_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field",
           "immunohistochemistry", "retina")


def _photographs():
  """Distinct real photographs: scikit-image's, and the four quarters of each colour one."""
  photos = {name: colour_photos.photograph(name) for name in _COLOUR}
  photos.update({name: np.stack([getattr(skimage_data, name)()] * 3, axis=-1) for name in _GRAY})
  for name in _COLOUR:
    pixels = photos[name]
    height, width = pixels.shape[0] // 2, pixels.shape[1] // 2
    for row in range(2):
      for column in range(2):
        photos[f"{name}_{row}{column}"] = pixels[row * height:(row + 1) * height,
                                                 column * width:(column + 1) * width]
  return photos


def _jpeg(pixels, quality=95, mode=None):
  image = Image.fromarray(pixels)
  buffer = io.BytesIO()
  (image.convert(mode) if mode else image).save(buffer, "JPEG", quality=quality)
  return buffer.getvalue()


# The planted copies: (name, source photograph, how it is made, its split and class, the original's
# split and class). Every other file is a distinct photograph.
def _exact(pixels):
  return _jpeg(pixels)


def _quality_70(pixels):
  return _jpeg(pixels, 70)


def _resized(pixels):
  image = Image.fromarray(pixels)
  image = image.resize((round(image.width * 0.8), round(image.height * 0.8)),
                       Image.Resampling.LANCZOS)
  return _jpeg(np.asarray(image))


def _grayscale(pixels):
  return _jpeg(pixels, mode="L")


def _recoloured(pixels):
  image = ImageEnhance.Brightness(Image.fromarray(pixels)).enhance(1.1)
  return _jpeg(np.asarray(ImageEnhance.Color(image).enhance(1.05)))


PLANTED = (
    ("astronaut", _exact, ("val", 0), ("train", 0)),
    ("chelsea", _quality_70, ("val", 1), ("train", 2)),  # of another class
    ("coffee", _resized, ("train", 1), ("train", 1)),  # within training
    ("rocket", _grayscale, ("val", 2), ("train", 2)),
    ("retina", _recoloured, ("val", 0), ("train", 0)),
    ("camera", _exact, ("val", 1), ("val", 2)),  # within validation, two classes
)


def _write(root, split, label, name, data):
  wnid = CLASSES[label]
  folder = os.path.join(root, "train" if split == "train" else "val", wnid)
  os.makedirs(folder, exist_ok=True)
  prefix = wnid if split == "train" else "ILSVRC2012_val"
  path = os.path.join(folder, f"{prefix}_{name}.JPEG")
  with open(path, "wb") as f:
    f.write(data)
  return f"{'train' if split == 'train' else 'val'}/{wnid}/{os.path.basename(path)}"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """(the tree, the groups of files it plants as {frozenset of (split, file)}, a reference build)."""
  root = tmp_path_factory.mktemp("audit")
  tree = str(root / "tree")
  photos = _photographs()
  planted = {name: (make, copy_at, original_at) for name, make, copy_at, original_at in PLANTED}
  groups = set()
  for number, (name, pixels) in enumerate(sorted(photos.items())):
    split, label = planted[name][2] if name in planted else (("train", "val")[number % 4 == 0],
                                                             number % len(CLASSES))
    original = _write(tree, split, label, name, _jpeg(pixels))
    if name in planted:
      make, (copy_split, copy_label), _ = planted[name]
      copy = _write(tree, copy_split, copy_label, f"{name}_copy", make(pixels))
      groups.add(frozenset({(_split(original), original), (_split(copy), copy)}))
  with open(os.path.join(tree, "synset_words.txt"), "w") as f:
    f.write("".join(f"{w} class {w}\n" for w in CLASSES))
  helpers.build_dataset(tree, root / "reference", num_shards={"train": 3, "validation": 2})
  return tree, groups, root / "reference"


def _split(path):
  return "train" if path.startswith("train/") else "validation"


def _found(dataset_dir):
  with open(os.path.join(dataset_dir, audit_lib.NAME), "rb") as f:
    document = audit_lib.parse(f.read(), audit_lib.NAME)
  return document, {
      frozenset((m["split"], m["file"]) for m in group) for group in document["groups"]
  }


def test_every_planted_copy_is_found_and_no_distinct_photograph(planted):
  _, groups, reference = planted
  document, found = _found(reference)
  assert found == groups
  assert document["counts"] == {
      "validation_in_train": 4, "validation_in_train_other_class": 1, "test_in_train": 0,
      "test_in_train_other_class": 0, "pairs_within_train": 1, "pairs_within_validation": 1,
      "pairs_within_test": 0, "groups": 6, "groups_of_several_classes": 2, "images_not_compared": 0
  }
  manifest = dataset_lib.load(str(reference))
  assert manifest.data["audit"]["counts"] == document["counts"]
  assert manifest.duplicated_in_training("validation") == {
      file for group in groups for split, file in group
      if split == "validation" and any(s == "train" for s, _ in group)
  }
  # The training split's fingerprints, one row per training record, kept for later audits.
  rows = np.load(reference / audit_lib.FINGERPRINTS_NAME)
  assert rows.dtype == search.ROW and len(rows) == manifest.num_examples("train")


def test_every_form_and_runner_finds_the_same(planted, tmp_path, caplog):
  tree, _, reference = planted
  archive_fixtures.pack_train_tar(tree, str(tmp_path / "ILSVRC2012_img_train.tar"))
  shutil.copytree(os.path.join(tree, "val"), tmp_path / "val")
  shutil.copy(os.path.join(tree, "synset_words.txt"), tmp_path)
  with caplog.at_level("INFO", logger="absl"):
    helpers.build_dataset(tmp_path, tmp_path / "out", helpers.TWO_PROCESSES,
                          num_shards={"train": 3, "validation": 2})
  assert (tmp_path / "out" / audit_lib.NAME).read_bytes() == (reference /
                                                              audit_lib.NAME).read_bytes()
  assert ("audit: 4 validation images duplicate training images (1 of another class); 1 pairs "
          "within train; 1 pairs within validation; 2 groups disagree on the class") in caplog.text


def test_a_clean_build_leaves_out_the_training_copies_of_held_out_images(planted, tmp_path):
  tree, groups, _ = planted
  manifest = helpers.build_dataset(tree, tmp_path / "clean",
                                   num_shards={"train": 3,
                                               "validation": 2}, drop_duplicates="train")
  dropped = {
      file for group in groups for split, file in group
      if split == "train" and any(s == "validation" for s, _ in group)
  }
  assert {d["path"] for d in manifest["audit"]["dropped"]} == dropped
  # The same shards, statistics and validation as a build of the input without those files.
  without = tmp_path / "without"
  shutil.copytree(tree, without)
  for path in dropped:
    os.remove(without / path)
  helpers.build_dataset(without, tmp_path / "reference", num_shards={"train": 3, "validation": 2})
  ours, theirs = (helpers.output_files(tmp_path / name) for name in ("clean", "reference"))
  ours_manifest, theirs_manifest = (
      files.pop(manifest_lib.MANIFEST_NAME) for files in (ours, theirs))
  for files in (ours, theirs):
    files.pop(audit_lib.NAME)
  assert ours == theirs  # shards, indexes, mean image, fingerprints, TFDS's files
  assert ours_manifest["stats"] == theirs_manifest["stats"]
  assert ours_manifest["splits"]["validation"] == theirs_manifest["splits"]["validation"]
  train = ours_manifest["splits"]["train"]
  assert train["files_seen"] == theirs_manifest["splits"]["train"]["files_seen"] + len(dropped)
  train["files_seen"] -= len(dropped)
  assert train == theirs_manifest["splits"]["train"]


def test_imagenetv2_is_audited_against_its_training_dataset(planted, tmp_path):
  tree, _, reference = planted
  folder = tmp_path / "v2" / test_imagenetv2.FOLDER
  # ImageNetV2's folder n is class n: a copy of a training photograph in class 0, two new ones.
  original = next(p for p in sorted(os.listdir(os.path.join(tree, "train", CLASSES[0]))))
  os.makedirs(folder / "0")
  shutil.copy(os.path.join(tree, "train", CLASSES[0], original), folder / "0" / "copy.jpeg")
  for number, name in enumerate(("page", "moon")):
    os.makedirs(folder / str(number + 1), exist_ok=True)
    (folder / str(number + 1) / f"{name}.jpeg").write_bytes(
        _jpeg(np.stack([getattr(skimage_data, name)()[::-1]] * 3, axis=-1)))
  helpers.build_dataset(tmp_path / "v2", tmp_path / "v2_shards", classes_from=str(reference))
  document, found = _found(tmp_path / "v2_shards")
  assert found == {
      frozenset({("train", f"train/{CLASSES[0]}/{original}"),
                 ("test", f"{test_imagenetv2.FOLDER}/0/copy.jpeg")})
  }
  assert document["counts"]["test_in_train"] == 1
  assert dataset_lib.load(str(tmp_path / "v2_shards")).duplicated_in_training("test") == {
      f"{test_imagenetv2.FOLDER}/0/copy.jpeg"
  }
  # A training dataset built without the audit has no fingerprints: one line, nothing written.
  helpers.build_dataset(tree, tmp_path / "unaudited", audit_duplicates=False)
  assert dataset_lib.load(str(tmp_path / "unaudited")).data["audit"] == {}
  assert not (tmp_path / "unaudited" / audit_lib.NAME).exists()
  with pytest.raises(
      errors.BuildError, match=r"--classes_from .*unaudited: its training images "
      r"have no fingerprints .*--noaudit_duplicates"):
    helpers.build_dataset(tmp_path / "v2", tmp_path / "v2_again",
                          classes_from=str(tmp_path / "unaudited"))
  assert not (tmp_path / "v2_again").exists()


@pytest.mark.parametrize("make", [_exact, _quality_70, _resized, _grayscale, _recoloured])
def test_each_kind_of_copy_is_a_candidate_and_is_confirmed(make):
  pixels = colour_photos.photograph("coffee")
  original, copy = (convert.convert_image(data) for data in (_jpeg(pixels), make(pixels)))
  thumbs = [fingerprint.thumbnail(image.encoded, image.pixels) for image in (original, copy)]
  # The stored bytes' path and the pixels' path (other splits keep no pixels) agree as well.
  thumbs[1] = fingerprint.thumbnail(copy.encoded)
  distance = (fingerprint.phash(thumbs[0]) ^ fingerprint.phash(thumbs[1])).bit_count()
  assert distance <= fingerprint.CANDIDATE_BITS
  assert fingerprint.similarity(*thumbs) >= fingerprint.SIMILAR


def test_a_flat_image_has_no_hash_and_an_oversized_bucket_is_bounded(monkeypatch):
  black = convert.convert_image(_jpeg(np.zeros((300, 400, 3), np.uint8)))
  assert fingerprint.is_flat(fingerprint.phash(fingerprint.thumbnail(black.encoded)))
  # A thousand hashes sharing their first band: compared only within equal second bands, counted.
  monkeypatch.setattr(search, "MAX_BUCKET", 100)
  rng = np.random.default_rng(0)
  rows = np.zeros(1000, search.ROW)
  rows["id"] = np.arange(1000)
  for i in range(1000):
    bits = np.zeros(64, bool)
    bits[rng.choice(np.arange(8, 64), 32 - 4, replace=False)] = True
    bits[:4] = True
    rows["hash"][i] = int("".join("1" if b else "0" for b in bits), 2)
  rows["digest"] = rows["id"]
  rows["hash"][1], rows["digest"][1] = rows["hash"][0], rows["digest"][0]  # an exact copy
  key = next(k for k, part in search.bucket_keys(rows) if len(part) == 1000)
  pairs, not_compared = search.candidate_pairs(key, rows)
  assert (0, 1, True) in pairs and not_compared == 1000
