"""Input discovery: the flat validation/test folders with devkit ground truth, and bad inputs."""

import shutil

import pytest

from preprocess import errors
from preprocess.inputs import devkit
from preprocess.inputs import sources
from preprocess.job import build
from tests import helpers


def _ground_truth(root, split):
  return root / "devkit" / "data" / f"ILSVRC2012_{split}_ground_truth.txt"


def test_flat_splits_are_labelled_through_the_devkit_ids(flat_sample, tmp_path):
  input_dir, info = flat_sample
  manifest = helpers.build_dataset(input_dir, tmp_path / "out")
  assert set(manifest["splits"]) == {"train", "validation", "test"}
  for split in ("validation", "test"):
    records = helpers.read_records(tmp_path / "out", split)
    assert {r["image/filename"]: r["image/class/synset"] for r in records
           } == dict(info.images[split])
    # The label is the sorted-WNID position, never the devkit ID.
    assert all(info.classes[r["image/class/label"]] == r["image/class/synset"] for r in records)
    assert manifest["splits"][split]["layout"] == "flat"
  assert manifest["classes"][info.classes.index("n02123045")]["name"] == "tabby, tabby cat"


def test_devkit_ids_are_not_in_sorted_wnid_order(flat_sample):
  input_dir, info = flat_sample
  meta = devkit.read_meta(str(input_dir / "devkit" / "data" / "meta.mat"))
  assert set(meta.id_to_wnid.values()) == set(info.classes)  # the inner node is left out
  by_id = [meta.id_to_wnid[i] for i in sorted(meta.id_to_wnid)]
  assert by_id != sorted(by_id)


@pytest.fixture
def flat_copy(flat_sample, tmp_path):
  input_dir, _ = flat_sample
  copy = tmp_path / "imagenet"
  shutil.copytree(input_dir, copy)
  return copy


def _plan(root):
  return build.plan_input(build.BuildOptions(input_dir=str(root), output_dir="unused"))


def test_ground_truth_with_a_missing_line_names_the_file(flat_copy):
  path = _ground_truth(flat_copy, "validation")
  path.write_text("\n".join(path.read_text().split("\n")[1:]))
  with pytest.raises(sources.InputError, match=r"validation_ground_truth.txt: \d+ lines, but"):
    _plan(flat_copy)


@pytest.mark.parametrize(
    "split, line, value, message",
    [
        ("test", 2, "1001", r"test_ground_truth.txt:3: ILSVRC ID 1001"),
        ("validation", 0, "n99999999", r"validation_ground_truth.txt:1: WNID 'n99999999'"),
        ("validation", 4, "n02123045", None),  # a WNID in place of an ID is understood
    ])
def test_ground_truth_line_is_checked_and_named(flat_copy, split, line, value, message):
  path = _ground_truth(flat_copy, split)
  lines = path.read_text().split("\n")
  lines[line] = value
  path.write_text("\n".join(lines))
  if message is None:
    _, _, plans, _ = _plan(flat_copy)
    assert {p.name: p for p in plans}[split].ground_truth[line] == value
    return
  with pytest.raises(sources.InputError, match=message):
    _plan(flat_copy)


def test_flat_folder_without_ground_truth_is_refused(flat_copy):
  shutil.rmtree(flat_copy / "devkit")
  with pytest.raises(sources.InputError, match="needs its ground-truth file"):
    _plan(flat_copy)


def test_validation_class_unknown_to_train_is_refused(sample, tmp_path):
  input_dir, _ = sample
  copy = tmp_path / "imagenet"
  shutil.copytree(input_dir, copy)
  (copy / "val" / "n01234567").mkdir()
  (copy / "val" / "n01234567" / "x.JPEG").write_bytes(b"")
  with pytest.raises(sources.InputError, match="n01234567.*not a training class"):
    _plan(copy)


def test_class_missing_from_the_names_file_is_refused(sample, tmp_path):
  input_dir, _ = sample
  copy = tmp_path / "imagenet"
  shutil.copytree(input_dir, copy)
  names = copy / "synset_words.txt"
  names.write_text("".join(names.read_text().splitlines(True)[1:]))
  with pytest.raises(errors.BuildError, match="is not in .*synset_words.txt"):
    _plan(copy)


def test_non_images_are_ignored_by_name():
  assert sources.is_ignored("train/n01440764/README.txt")
  assert sources.is_ignored("train/n01440764/.DS_Store")
  assert sources.is_ignored("Thumbs.db")
  assert not sources.is_ignored("train/n01440764/n01440764_1.JPEG")
  assert not sources.is_ignored("val/ILSVRC2012_val_00000001.JPEG")
