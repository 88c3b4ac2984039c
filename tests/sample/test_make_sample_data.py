"""Tests for sample/make_sample_data.py: the tree it writes is what SampleInfo says it is."""

import gzip
import io
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import scipy.io

from preprocess import errors
from preprocess.conversion import convert
from preprocess.conversion import decode
from sample import make_sample_data

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def read_tree(root):
  """Every file under `root` as {relative "/"-separated path: bytes}."""
  contents = {}
  for directory, _, names in os.walk(root):
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        contents[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
  return contents


@pytest.fixture(scope="module")
def folders_tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("folders") / "sample")
  info = make_sample_data.make_sample_tree(root, images_per_class_train=3, images_per_class_val=2,
                                           images_per_class_test=1)
  return root, info


@pytest.fixture(scope="module")
def flat_tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("flat") / "sample")
  info = make_sample_data.make_sample_tree(root, images_per_class_train=2, images_per_class_val=3,
                                           images_per_class_test=2, val_layout="flat")
  return root, info


def test_folders_layout_matches_sample_info(folders_tree):
  root, info = folders_tree
  assert len(info.classes) == 10
  assert list(info.classes) == sorted(info.classes)
  assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in info.classes)
  assert set(info.class_names) == set(info.classes)
  for split, folder, per_class in (("train", "train", 3), ("validation", "val", 2), ("test", "test",
                                                                                     1)):
    assert sorted(os.listdir(os.path.join(root, folder))) == list(info.classes)
    files = info.images[split]
    assert len(files) == 10 * per_class
    for path, wnid in files:
      assert path.split("/")[:2] == [folder, wnid]
  tree = read_tree(root)
  listed = ({path for files in info.images.values() for path, _ in files} | set(info.broken) |
            set(info.ignored) | {"synset_words.txt"})
  assert set(tree) == listed
  assert not any(path.startswith("devkit/") for path in tree)
  names = tree["synset_words.txt"].decode().splitlines()
  assert names == [f"{wnid} {info.class_names[wnid]}" for wnid in info.classes]
  assert "n02123045 tabby, tabby cat" in names


def test_broken_and_ignored_files_only_in_train_class_folders(folders_tree):
  _, info = folders_tree
  assert sorted(info.broken.values()) == sorted(
      [errors.EMPTY, errors.TRUNCATED, errors.UNIDENTIFIED, errors.UNIDENTIFIED])
  for path in list(info.broken) + list(info.ignored):
    folder, wnid, _ = path.split("/")
    assert folder == "train" and wnid in info.classes
  assert sorted(os.path.basename(path) for path in info.ignored) == [".DS_Store", "README.txt"]
  kept = {path for files in info.images.values() for path, _ in files}
  assert set(info.repaired) <= kept
  assert not kept & set(info.broken)


def test_dirty_files_are_what_they_claim(folders_tree):
  root, info = folders_tree
  tree = read_tree(root)
  assert set(info.repaired.values()) == {(decode.GRAYSCALE_TO_RGB,), (decode.CMYK_TO_RGB,),
                                         (decode.PNG_SOURCE,), (decode.GUNZIP,),
                                         (decode.PNG_SOURCE, decode.ALPHA_REMOVED)}
  assert any(path.startswith("val/") for path in info.repaired)
  for path, fixes in info.repaired.items():
    content = tree[path]
    if fixes == (decode.GUNZIP,):
      assert content[:2] == b"\x1f\x8b"
      content = gzip.decompress(content)
      assert content.startswith(JPEG_MAGIC)
      assert Image.open(io.BytesIO(content)).mode == "RGB"
    elif fixes[0] == decode.PNG_SOURCE:
      assert content.startswith(PNG_MAGIC)
      assert Image.open(
          io.BytesIO(content)).mode == ("RGBA" if decode.ALPHA_REMOVED in fixes else "RGB")
    else:
      assert content.startswith(JPEG_MAGIC)
      assert Image.open(io.BytesIO(content)).mode == {(decode.GRAYSCALE_TO_RGB,): "L",
                                                      (decode.CMYK_TO_RGB,): "CMYK"}[fixes]
  for path, reason in info.broken.items():
    content = tree[path]
    if reason == errors.EMPTY:
      assert content == b""
    elif reason == errors.UNIDENTIFIED:
      with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(content))
    else:
      assert reason == errors.TRUNCATED and content.startswith(JPEG_MAGIC)
      with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(content)).load()
  for files in info.images.values():
    for path, _ in files:
      if path not in info.repaired:
        image = Image.open(io.BytesIO(tree[path]))
        assert (image.format, image.mode) == ("JPEG", "RGB")
        image.load()


def test_convert_applies_exactly_the_recorded_fixes_and_skip_reasons(folders_tree):
  """Pins SampleInfo's fix and reason names to what preprocess/conversion/ records."""
  root, info = folders_tree
  tree = read_tree(root)
  for files in info.images.values():
    for path, _ in files:
      converted = convert.convert_image(tree[path], image_size=32)
      assert converted.fixes == info.repaired.get(path, ()), path
  for path, reason in info.broken.items():
    with pytest.raises(errors.SkipImage) as skipped:
      convert.convert_image(tree[path], image_size=32)
    assert skipped.value.reason == reason, path


def test_sizes_vary_like_imagenet(folders_tree):
  root, info = folders_tree
  tree = read_tree(root)
  sizes = [
      Image.open(io.BytesIO(tree[path])).size
      for path, _ in info.images["train"]
      if info.repaired.get(path) != (decode.GUNZIP,)
  ]
  assert any(width < height for width, height in sizes)  # Portrait.
  assert any(width > height for width, height in sizes)
  assert any(max(size) <= 100 for size in sizes)  # Thumbnail-small.
  assert any(max(size) >= 1600 for size in sizes)  # Large.
  assert any(width >= 10 * height for width, height in sizes)  # Panorama.
  assert (500, 375) in sizes


def test_flat_layout_ground_truth_goes_through_devkit_ids(flat_tree):
  root, info = flat_tree
  synsets = scipy.io.loadmat(os.path.join(root, "devkit/data/meta.mat"), squeeze_me=True,
                             struct_as_record=False)["synsets"]
  wnid_of_id = {int(s.ILSVRC2012_ID): s.WNID for s in synsets if s.num_children == 0}
  assert sorted(wnid_of_id) == list(range(1, 11))
  assert sorted(wnid_of_id.values()) == list(info.classes)
  assert {wnid: devkit_id for devkit_id, wnid in wnid_of_id.items()} == info.devkit_ids
  # As in the real devkit, ID order is not sorted-WNID order, so ID - 1 is not the label.
  assert [wnid_of_id[i] for i in range(1, 11)] != list(info.classes)
  parents = [s for s in synsets if s.num_children > 0]
  assert parents and all(int(s.ILSVRC2012_ID) > 10 for s in parents)
  assert all(int(child) in wnid_of_id for s in parents for child in np.atleast_1d(s.children))
  train_wnids = set(os.listdir(os.path.join(root, "train")))
  for split, folder, truth_name, per_class in (("validation", "val", "validation", 3),
                                               ("test", "test", "test", 2)):
    names = sorted(os.listdir(os.path.join(root, folder)))
    assert names == [f"ILSVRC2012_{folder}_{n:08d}.JPEG" for n in range(1, 10 * per_class + 1)]
    with open(os.path.join(root, f"devkit/data/ILSVRC2012_{truth_name}_ground_truth.txt")) as f:
      truth = [wnid_of_id[int(line)] for line in f.read().splitlines()]
    assert len(truth) == len(names)
    assert set(truth) <= train_wnids
    assert [wnid for _, wnid in info.images[split]] == truth
    assert [path for path, _ in info.images[split]] == [f"{folder}/{name}" for name in names]
    assert truth != sorted(truth)  # Numbering shuffles the classes.


def test_same_seed_same_bytes_other_seed_differs(tmp_path, flat_tree):
  root, _ = flat_tree
  options = dict(images_per_class_train=2, images_per_class_val=3, images_per_class_test=2,
                 val_layout="flat")
  make_sample_data.make_sample_tree(str(tmp_path / "again"), **options)
  first, again = read_tree(root), read_tree(str(tmp_path / "again"))
  assert first == again
  make_sample_data.make_sample_tree(str(tmp_path / "other"), seed=1, **options)
  other = read_tree(str(tmp_path / "other"))
  differing = [path for path in first if first[path] != other.get(path)]
  assert len(differing) > len(first) // 2


def test_broken_files_false_writes_no_broken_or_stray_files(tmp_path):
  info = make_sample_data.make_sample_tree(str(tmp_path / "clean"), images_per_class_train=1,
                                           images_per_class_val=0, broken_files=False)
  assert info.broken == {} and info.ignored == ()
  assert info.repaired  # Repairable files are kept data, not broken ones.
  assert set(info.images) == {"train"}
  assert len(read_tree(str(tmp_path / "clean"))) == 10 + 1  # Images and synset_words.txt.


def test_classes_are_separable_by_a_nearest_centroid_classifier(tmp_path):
  info = make_sample_data.make_sample_tree(str(tmp_path / "s"), images_per_class_train=8,
                                           images_per_class_val=6, broken_files=False)

  def features(split):
    rows = [(Image.open(tmp_path / "s" / path).convert("RGB"), wnid)
            for path, wnid in info.images[split]
            if path not in info.repaired]
    pixels = np.stack(
        [np.asarray(image.resize((8, 8), Image.BOX), np.float32).ravel() for image, _ in rows])
    return pixels, np.array([info.classes.index(wnid) for _, wnid in rows])

  train_x, train_y = features("train")
  val_x, val_y = features("validation")
  centroids = np.stack([train_x[train_y == label].mean(0) for label in range(10)])
  predicted = np.argmin(((val_x[:, None] - centroids[None])**2).sum(-1), axis=1)
  assert np.mean(predicted == val_y) >= 0.6  # Chance is 0.1.


def test_rejects_non_empty_output_dir_and_bad_counts(tmp_path):
  (tmp_path / "old.txt").write_text("x")
  with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
    make_sample_data.make_sample_tree(str(tmp_path))
  with pytest.raises(ValueError, match="images per class"):
    make_sample_data.make_sample_tree(str(tmp_path / "new"), images_per_class_train=0)
  with pytest.raises(ValueError, match="val_layout"):
    make_sample_data.make_sample_tree(str(tmp_path / "new"), val_layout="nested")


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "sample.make_sample_data", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


def test_cli_writes_tree(tmp_path):
  result = run_cli(f"--output_dir={tmp_path / 'out'}", "--images_per_class_train=1",
                   "--images_per_class_val=1", "--val_layout=flat", "--nobroken_files")
  assert result.returncode == 0, result.stderr
  tree = read_tree(str(tmp_path / "out"))
  assert len([path for path in tree if path.startswith("train/")]) == 10
  assert len([path for path in tree if path.startswith("val/")]) == 10
  assert "devkit/data/meta.mat" in tree


@pytest.mark.parametrize("args, message", [
    ((), "--output_dir"),
    (("--output_dir={tmp}", "--val_layout=nested"), "val_layout"),
    (("--output_dir={tmp}", "--broken_files", "true"), "--broken_files=false"),
    (("--output_dir={tmp}",), "not an empty directory"),
    (("--output_dir={tmp}/old.txt",), "not an empty directory"),
    (("--output_dir={tmp}/new", "--seed=-1"), "flag --seed=-1: -1 is not a non-negative integer"),
    (("--output_dir={tmp}/new", "--images_per_class_val=-1"), "flag --images_per_class_val=-1"),
])
def test_cli_rejects_bad_input_with_one_clear_line(tmp_path, args, message):
  (tmp_path / "old.txt").write_text("x")
  result = run_cli(*(arg.format(tmp=tmp_path) for arg in args))
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  first_line = result.stderr.strip().splitlines()[0]
  assert message in first_line
