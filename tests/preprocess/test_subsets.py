"""Subsets of a release: the same files on every input form and runner, recorded in the manifest,
bad input refused in one line, resumed builds checked against the subset's options."""

import hashlib
import logging
import os
import re
import subprocess
import sys

import pytest

from common import dataset as dataset_lib
from common import manifest as manifest_lib
from common import reader
from preprocess import errors
from preprocess.inputs import sources
from preprocess.inputs import subsets
from preprocess.job import report
from sample import make_sample_data
from tests import helpers
from tests.preprocess import test_archives

SHARDS = {"train": 2, "validation": 1}
PER_CLASS = 3
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  """(root holding `tree/` and `classes.txt`, SampleInfo, the three kept WNIDs, the reference
  build of the extracted tree with `--classes classes.txt --per_class 3`)."""
  root = tmp_path_factory.mktemp("subsets")
  info = make_sample_data.make_sample_tree(root / "tree", images_per_class_train=4,
                                           images_per_class_val=2, val_layout="flat")
  # Unsorted, with a byte-order mark, CRLF, a duplicate and a `<wnid> <words>` line: read as a set.
  wnids = (info.classes[6], info.classes[1], info.classes[3])
  (root / "classes.txt").write_text(
      f"\ufeff{wnids[0]}\r\n{wnids[1]} words\n\n{wnids[2]}\n"
      f"{wnids[0]}\n", newline="")
  manifest = _build(root, root / "tree", root / "reference")
  return root, info, tuple(sorted(wnids)), manifest


def _build(root, input_dir, output_dir, beam_args=helpers.IN_PROCESS, **options):
  options = {"classes": str(root / "classes.txt"), "per_class": PER_CLASS, **options}
  return helpers.build_dataset(input_dir, output_dir, beam_args, num_shards=SHARDS, **options)


def _chosen(tree, wnid, count, seed=0):
  """The documented rule, computed here: the `count` files of the class with the smallest
  sha256(f"{seed}:{name}")."""
  names = [n for n in os.listdir(tree / "train" / wnid) if not sources.is_ignored(n)]
  ranked = sorted(names, key=lambda n: (hashlib.sha256(f"{seed}:{n}".encode()).digest()[:8], n))
  return {f"train/{wnid}/{name}" for name in ranked[:count]}


def _train_files(output_dir, manifest):
  """Training files written or skipped, as (path, label, synset) and paths."""
  written = {(r["image/filename"].decode(), r["image/class/label"],
              r["image/class/synset"].decode()) for r in reader.read_shards(
                  [str(output_dir / s["file"]) for s in manifest["splits"]["train"]["shards"]])}
  skipped = {s["path"] for s in manifest["skipped"] if s["split"] == "train"}
  return written, {path for path, _, _ in written} | skipped


@pytest.mark.parametrize("make_form", [
    test_archives._ilsvrc2012, test_archives._kaggle, test_archives._kaggle_zip,
    test_archives._mixed
])
def test_every_input_form_gives_the_same_subset_bytes(release, make_form, tmp_path):
  root, info, _, _ = release
  form = make_form(root, info, tmp_path / "form")
  _build(root, form, tmp_path / "out")
  assert test_archives.comparable(tmp_path / "out") == test_archives.comparable(root / "reference")


def test_the_manifest_records_the_subset_and_labels_follow_its_sorted_wnids(release):
  root, info, wnids, manifest = release
  assert [(c["label"], c["synset"]) for c in manifest["classes"]] == list(enumerate(wnids))
  chosen = set().union(*(_chosen(root / "tree", wnid, PER_CLASS) for wnid in wnids))
  written, listed = _train_files(root / "reference", manifest)
  assert listed == chosen
  assert all(label == wnids.index(synset) for _, label, synset in written)
  validation = sorted(p for p, w in info.images["validation"] if w in wnids)
  assert manifest["splits"]["validation"]["num_examples"] == len(validation)
  assert set(manifest["splits"]["validation"]["class_counts"]) == set(wnids)
  assert all(
      path.split("/")[1] in wnids for path in manifest["ignored_files"] if path.count("/") > 1)
  digest = hashlib.sha256("".join(f"{line}\n" for line in [*wnids, *sorted(chosen)]).encode())
  assert manifest["subset"] == {
      "name": str(root / "classes.txt"), "wnids": list(wnids), "digest": digest.hexdigest(),
      "per_class": PER_CLASS, "train_list": None, "short_classes": {}, "unmatched": []
  }
  assert manifest["args"]["classes"] == str(root / "classes.txt")
  # What the trainer and TFDS read: a dataset like any other, in the subset's classes.
  assert dataset_lib.load(str(root / "reference"), verify="sha256").synsets == list(wnids)
  labels = (root / "reference" / "image.class.label.labels.txt").read_text().split()
  assert labels == list(wnids)


def test_per_class_is_the_same_on_every_runner_and_rerun_and_follows_the_seed(release, tmp_path):
  root, _, wnids, _ = release
  _build(root, root / "tree", tmp_path / "two", helpers.TWO_PROCESSES)
  assert helpers.output_files(tmp_path / "two") == helpers.output_files(root / "reference")
  _build(root, root / "tree", tmp_path / "again")
  assert helpers.output_files(tmp_path / "again") == helpers.output_files(root / "reference")
  manifest = _build(root, root / "tree", tmp_path / "seed", seed=1)
  _, listed = _train_files(tmp_path / "seed", manifest)
  assert listed == set().union(*(_chosen(root / "tree", w, PER_CLASS, seed=1) for w in wnids))
  assert listed != _train_files(root / "reference",
                                dataset_lib.load(str(root / "reference"), verify="none").data)[1]


def test_a_train_list_keeps_exactly_its_files_and_the_summary_names_what_it_missed(
    release, tmp_path, caplog):
  root, info, wnids, _ = release
  images = {
      w: sorted(n for n in os.listdir(root / "tree" / "train" / w) if not sources.is_ignored(n))
      for w in info.classes
  }
  first, second = images[wnids[0]], images[wnids[1]]
  outside = next(w for w in info.classes if w not in wnids)
  names = first[:3] + second[:1] + [images[outside][0], "n00000000_1.JPEG", "missing.JPEG"]
  (tmp_path / "list.txt").write_text("".join(f"{name}\n" for name in names))
  with caplog.at_level(logging.INFO, logger="absl"):
    manifest = _build(root, root / "tree", tmp_path / "out", per_class=2,
                      train_list=str(tmp_path / "list.txt"))
  _, listed = _train_files(tmp_path / "out", manifest)
  # Two of the first class's three by the hash, the one of the second, none of the third.
  ranked = sorted(first[:3], key=lambda n: hashlib.sha256(f"0:{n}".encode()).digest()[:8])
  assert listed == {f"train/{wnids[0]}/{n}" for n in ranked[:2]} | {f"train/{wnids[1]}/{second[0]}"}
  assert manifest["subset"]["short_classes"] == {wnids[1]: 1, wnids[2]: 0}
  assert manifest["subset"]["unmatched"] == ["missing.JPEG", "n00000000_1.JPEG"]
  assert f"{wnids[1]} (1), {wnids[2]} (0)" in caplog.text
  assert re.search(r"2 names match no training file.*: missing.JPEG, n00000000_1.JPEG", caplog.text)
  assert [c["synset"] for c in manifest["classes"]] == list(wnids)  # the third kept, no image


@pytest.mark.parametrize("flag, message", [
    ("--classes=imagenet1k", "--classes imagenet1k: not a list this project ships (imagenet100, "
     "imagenette, imagewoof) nor a file of WNIDs"),
    ("--classes=imagenette", "--classes imagenette: 10 of its 10 WNIDs are not classes of the "
     "release's training split (n01440764, n02102040, n02979186, ...)"),
    ("--per_class=0", "flag --per_class=0: 0 is not a positive integer"),
    ("--classes={tmp}/wnids.txt", "--classes {tmp}/wnids.txt: no such file"),
    ("--train_list={tmp}/1percent.txt", "--train_list {tmp}/1percent.txt: no such file"),
])
def test_bad_subset_input_is_one_line_and_writes_nothing(sample, tmp_path, flag, message):
  result = subprocess.run([
      sys.executable, "-m", "preprocess.build_shards", f"--input_dir={sample[0]}",
      f"--output_dir={tmp_path / 'out'}",
      flag.format(tmp=tmp_path)
  ], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  message = message.format(tmp=tmp_path)
  assert len([line for line in result.stderr.splitlines() if message in line]) == 1, result.stderr
  assert not (tmp_path / "out").exists()


def test_a_list_line_that_is_not_a_wnid_is_named(tmp_path):
  (tmp_path / "wnids.txt").write_text("n01440764\ntench\n")
  with pytest.raises(errors.BuildError, match=r"wnids.txt: line 2 is not a WNID: 'tench'"):
    subsets.read_request(classes=str(tmp_path / "wnids.txt"))
  with pytest.raises(errors.BuildError, match="--per_class=0: must be at least 1"):
    subsets.read_request(per_class=0)


class _Stop(Exception):
  """Stands for a stop after every shard was written and before the manifest."""


def _stopped_build(root, output_dir, monkeypatch, **options):
  with monkeypatch.context() as patch:
    patch.setattr(report, "write_mean_and_manifest", lambda *args: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
      _build(root, root / "tree", output_dir, **options)


def _without_resume(dataset_dir):
  files = helpers.output_files(dataset_dir)
  files[manifest_lib.MANIFEST_NAME].pop("resume")
  return files


def test_a_rerun_with_other_subset_options_rebuilds_every_shard(release, tmp_path, monkeypatch):
  root, _, _, _ = release
  num_shards = sum(SHARDS.values())
  _stopped_build(root, tmp_path / "same", monkeypatch)
  assert _build(root, root / "tree", tmp_path / "same")["resume"]["kept_shards"] == num_shards
  assert _without_resume(tmp_path / "same") == _without_resume(root / "reference")
  # Validation's images are the same with fewer training images per class; its shard is still not
  # this run's: the subset's options are part of what a kept shard is checked against.
  _stopped_build(root, tmp_path / "other", monkeypatch)
  resumed = _build(root, root / "tree", tmp_path / "other", per_class=PER_CLASS - 1)["resume"]
  assert (resumed["kept_shards"], resumed["rebuilt"]) == (0, {"options differ": num_shards})
