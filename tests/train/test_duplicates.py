"""The score without the images stage 1's audit found in training: `train.evaluate` and the report.

The tiny dataset of conftest.py gets a `duplicates.json` naming three validation images with a
training copy (and a pair inside validation, which stays in). The expected figures come from each
image's top-1/top-5 hits and loss computed here with NumPy crops and the restored Keras model, with
and without those files; the three are chosen so that leaving them out changes the figures.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from common import audit as audit_lib
from common import dataset as dataset_lib
from common import image as image_lib
from common import manifest as manifest_lib
from common import schema
from train import evaluate
from train.evaluation import duplicates as duplicates_lib
from train.evaluation import trained
from train.model_dir import restore
from train.report import page
from train.report import passes

PAGE_OPTIONS = dict(batch_size=4, neighbour_pool=0, num_queries=1, num_neighbours=1,
                    num_predictions=2, num_confusions=1)
CROP = 227


@pytest.fixture(scope="module")
def model_dir(trained_dir, tmp_path_factory):
  """The trained model with He-scaled random weights: four steps leave its logits constant, which
  would make every image score alike and leaving any out change nothing."""
  directory = shutil.copytree(trained_dir, str(tmp_path_factory.mktemp("dup") / "model"))
  model, _, _ = restore.restore_model(directory)
  rng = np.random.default_rng(0)
  for variable in model.trainable_variables:
    fan_in = np.prod(variable.shape[:-1]) if len(variable.shape) > 1 else 1
    variable.assign(rng.normal(0, np.sqrt(2 / fan_in), variable.shape).astype(np.float32))
  tf.train.Checkpoint(model=model).save(os.path.join(directory, "best", "lively"))
  return directory


@pytest.fixture(scope="module")
def by_hand(model_dir, dataset_dir):
  """{file name: (top-1 hit, top-5 hit, loss)} of every validation image, central crop, ties
  counting against the model."""
  model, _, _ = restore.restore_model(model_dir)
  mean = np.load(os.path.join(model_dir, "mean.npy"))
  start = (schema.IMAGE_SIZE - CROP) // 2
  results = {}
  manifest = dataset_lib.load(dataset_dir)
  for path in manifest.shard_paths("validation"):
    for record in tf.data.TFRecordDataset(path):
      features = schema.parse_example(record)
      # The stage's own decoder (its exact IDCT): random weights magnify a grey level's difference.
      pixels = image_lib.decode_image(features, manifest.encoding).numpy().astype(np.float32)
      crop = (pixels - mean)[start:start + CROP, start:start + CROP]
      logits = model(crop[np.newaxis], training=False).numpy()[0].astype(np.float64)
      label = int(features[schema.LABEL])
      others_as_high = int((logits >= logits[label]).sum()) - 1
      probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
      results[features[schema.FILENAME].numpy().decode()] = (others_as_high < 1, others_as_high
                                                             < 5, -np.log(probabilities[label]))
  return results


def figures(by_hand, leave_out=()):
  """(top-1 accuracy, top-5 accuracy, mean loss, images) over the images not in `leave_out`."""
  kept = np.array([v for name, v in by_hand.items() if name not in leave_out], np.float64)
  return kept[:, 0].mean(), kept[:, 1].mean(), kept[:, 2].mean(), len(kept)


@pytest.fixture(scope="module")
def chosen(by_hand):
  """Three validation images to call copies of training images: top-1 hits first, so that the
  figures without them differ from the standard ones whenever the model gets some images wrong."""
  hits = [name for name, (hit, _, _) in by_hand.items() if hit]
  misses = [name for name in by_hand if name not in hits]
  assert hits and misses, "the model must get some images right and some wrong"
  names = (hits + misses)[:3]
  assert figures(by_hand, names)[0] != figures(by_hand)[0]
  return sorted(names)


def member(split, file):
  label = int(file.split("/")[1])  # conftest names files "<split>/<label>/<index>.JPEG"
  return {"split": split, "file": file, "class": f"n0000000{label}"}


def write_audit(directory, groups):
  """Writes `duplicates.json` and the manifest's `audit` entry, as stage 1 would."""
  document = audit_lib.make_document(groups, {"hash": "test"})
  data = audit_lib.dumps(document)
  with open(os.path.join(directory, audit_lib.NAME), "wb") as f:
    f.write(data)
  path = os.path.join(directory, manifest_lib.MANIFEST_NAME)
  with open(path) as f:
    manifest = json.load(f)
  manifest["audit"] = {
      "file": audit_lib.NAME, "sha256": hashlib.sha256(data).hexdigest(), "fingerprints": None,
      "fingerprints_sha256": None, "counts": document["counts"], "dropped": []
  }
  with open(path, "w") as f:
    f.write(manifest_lib.dumps(manifest))
  return directory


def copies_of(names, by_hand):
  """The audit's groups: each name with a training copy of its class, and a pair of two other
  validation images with no training copy (which a clean score keeps)."""
  others = [name for name in sorted(by_hand) if name not in names][:2]
  groups = [[member("validation", name),
             member("train", f"train/{name.split('/')[1]}/0.JPEG")] for name in names]
  return groups + [[member("validation", name) for name in others]]


@pytest.fixture(scope="module")
def audited_dir(dataset_dir, chosen, by_hand, tmp_path_factory):
  directory = shutil.copytree(dataset_dir, str(tmp_path_factory.mktemp("dup") / "audited"))
  return write_audit(directory, copies_of(chosen, by_hand))


@pytest.fixture(scope="module")
def unaudited_dir(dataset_dir, tmp_path_factory):
  """The dataset as a build before the audit (or with --noaudit_duplicates) left it."""
  directory = shutil.copytree(dataset_dir, str(tmp_path_factory.mktemp("dup") / "unaudited"))
  path = os.path.join(directory, manifest_lib.MANIFEST_NAME)
  with open(path) as f:
    manifest = json.load(f)
  manifest["audit"] = {}
  with open(path, "w") as f:
    f.write(manifest_lib.dumps(manifest))
  os.remove(os.path.join(directory, audit_lib.NAME))
  return directory


def run_evaluate(*args):
  """`train.evaluate`'s main in this process, its flags in a `FlagValues` of their own.

  Returns:
    (stdout lines, exit code).
  """
  flag_values = flags.FlagValues()
  evaluate.define_flags(flag_values)
  argv = flag_values(["train.evaluate", *args, "--batch_size=4"])
  stdout, code = io.StringIO(), 0
  with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
    patch.setattr(evaluate, "FLAGS", flag_values)
    try:
      evaluate.main(argv)
    except SystemExit as exit_:
      code = exit_.code
  return stdout.getvalue().splitlines(), code


def test_kept_refuses_an_audit_that_names_images_the_split_lacks():
  np.testing.assert_array_equal(duplicates_lib.kept(["a", "b", "c"], {"b"}, "validation"),
                                [True, False, True])
  with pytest.raises(ValueError, match="names 1 image.*e.g. d; duplicates.json"):
    duplicates_lib.kept(["a", "b"], {"b", "d"}, "validation")
  assert duplicates_lib.without(1) == "without the 1 image also in training"


def test_evaluate_model_scores_the_split_with_and_without_the_copies(audited_dir, model_dir,
                                                                     by_hand, chosen):
  manifest = dataset_lib.load(audited_dir)
  duplicates = manifest.duplicated_in_training("validation")
  assert duplicates == frozenset(chosen)  # the pair inside validation is not left out
  result = trained.evaluate_model(manifest, model_dir, "validation", batch_size=4,
                                  duplicates=duplicates)
  top1, top5, loss, count = figures(by_hand)
  clean_top1, clean_top5, clean_loss, clean_count = figures(by_hand, chosen)
  assert (result["count"], result["clean_count"]) == (count, clean_count) == (9, 6)
  assert (result["top1"], result["top5"]) == pytest.approx((top1, top5))
  assert (result["clean_top1"], result["clean_top5"]) == pytest.approx((clean_top1, clean_top5))
  assert (result["loss"], result["clean_loss"]) == pytest.approx((loss, clean_loss), rel=1e-4)
  # The standard figures are plain evaluation's, to the bit.
  plain = trained.evaluate_model(manifest, model_dir, "validation", batch_size=4)
  assert (plain["top1"], plain["top5"], plain["count"]) == (result["top1"], result["top5"],
                                                            result["count"])


def test_evaluate_prints_the_standard_line_then_the_one_without_the_copies(
    audited_dir, model_dir, by_hand, chosen):
  top1, top5, _, _ = figures(by_hand)
  clean_top1, clean_top5, _, _ = figures(by_hand, chosen)
  lines, code = run_evaluate(f"--shards={audited_dir}", f"--model_dir={model_dir}")
  assert code == 0 and len(lines) == 2
  assert lines[0].startswith(f"validation: top-1 error {1 - top1:.4f}, top-5 error "
                             f"{1 - top5:.4f}, loss ")
  assert " on 9 images (central crop, " in lines[0]
  assert lines[1] == (f"validation without the 3 images also in training (audit): top-1 error "
                      f"{1 - clean_top1:.4f}, top-5 error {1 - clean_top5:.4f} on 6 images")
  headline, code = run_evaluate(f"--shards={audited_dir}", f"--model_dir={model_dir}",
                                "--exclude_duplicates")
  assert code == 0 and len(headline) == 2
  assert headline[0].startswith(f"validation (without the 3 images also in training): top-1 "
                                f"error {1 - clean_top1:.4f}, top-5 error {1 - clean_top5:.4f}, "
                                "loss ")
  assert " on 6 images (central crop, " in headline[0]
  assert headline[1] == lines[0].replace("validation:", "validation as released (standard):")


def test_an_audit_that_found_none_says_so_and_scores_as_before(dataset_dir, unaudited_dir,
                                                               model_dir, tmp_path):
  audited = write_audit(
      shutil.copytree(dataset_dir, str(tmp_path / "shards")),
      [[member("validation", "validation/0/0.JPEG"),
        member("validation", "validation/0/1.JPEG")]])
  lines, code = run_evaluate(f"--shards={audited}", f"--model_dir={model_dir}")
  plain, _ = run_evaluate(f"--shards={unaudited_dir}", f"--model_dir={model_dir}")
  assert code == 0
  assert lines == plain + ["validation: the audit found no image also in training"]
  assert len(plain) == 1  # not audited: the output it always had


@pytest.mark.parametrize("shards, args, message", [
    ("unaudited_dir", ["--exclude_duplicates"],
     "needs stage 1's duplicate audit, and this dataset was built without it .*; rebuild it with "
     "python -m preprocess.build_shards"),
    ("audited_dir", ["--exclude_duplicates", "--split=train"], "--split=train has none to leave"),
    ("audited_dir", ["--exclude_duplicates", "--skip_corrupt"],
     "without the images also in training pairs every record with its file name; it cannot be "
     "combined with --skip_corrupt"),
])
def test_a_mistake_with_exclude_duplicates_is_one_line(shards, args, message, model_dir, request,
                                                       caplog):
  with caplog.at_level(logging.INFO):
    lines, code = run_evaluate(f"--shards={request.getfixturevalue(shards)}",
                               f"--model_dir={model_dir}", *args)
  errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
  assert (code, lines, len(errors)) == (1, [], 1)
  assert re.search(message, errors[0]), errors[0]


def test_skip_corrupt_gives_the_standard_score_and_says_why_not_the_other(
    audited_dir, model_dir, caplog):
  with caplog.at_level(logging.INFO):
    lines, code = run_evaluate(f"--shards={audited_dir}", f"--model_dir={model_dir}",
                               "--skip_corrupt")
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert code == 0 and len(lines) == 1 and lines[0].startswith("validation: top-1 error ")
  assert ("validation: no score without the 3 images also in training: it pairs every record "
          "with its file name, which --skip_corrupt cannot promise") in warnings


@pytest.fixture(scope="module")
def context(audited_dir, model_dir):
  return page.build_context(dataset_lib.load(audited_dir), model_dir, "validation", **PAGE_OPTIONS)


def test_the_report_shows_both_rows_beside_each_other(context, audited_dir, model_dir, by_hand,
                                                      chosen):
  rows = {(row["method"], row["which"]): row for row in context["metrics"]["rows"]}
  without = "without the 3 images also in training"
  assert list(rows) == [("central crop", "as released"), ("central crop", without),
                        ("ten crops (paper's test)", "as released"),
                        ("ten crops (paper's test)", without)]
  top1, top5, _, count = figures(by_hand)
  clean_top1, clean_top5, _, clean_count = figures(by_hand, chosen)
  central, clean = rows[("central crop", "as released")], rows[("central crop", without)]
  assert (central["top1"], central["top5"], central["count"]) == pytest.approx(
      (1 - top1, 1 - top5, count))
  assert (clean["top1"], clean["top5"], clean["count"]) == pytest.approx(
      (1 - clean_top1, 1 - clean_top5, clean_count))
  manifest = dataset_lib.load(audited_dir)
  ten_crop = trained.evaluate_model(manifest, model_dir, "validation", ten_crop=True, batch_size=4,
                                    duplicates=manifest.duplicated_in_training("validation"))
  assert rows[("ten crops (paper's test)",
               without)]["top1"] == pytest.approx(1 - ten_crop["clean_top1"])
  assert context["metrics"]["duplicates"] == {"left_out": 3, "which": without}
  summary = audit_lib.summary(manifest.data["audit"]["counts"])
  assert summary.startswith("3 validation images duplicate training images (0 of another class); "
                            "1 pairs within validation")
  assert context["summary"]["dataset"]["audit"] == summary
  html = page.render(context)
  assert f"central crop, validation {without}" in html
  assert "central crop, validation as released" in html
  assert summary in html and "found 3 images of this split also in training" in html


def test_a_new_audit_changes_the_rows_without_a_new_pass(audited_dir, model_dir, chosen, by_hand,
                                                         tmp_path, monkeypatch):
  shards = shutil.copytree(audited_dir, str(tmp_path / "shards"))
  model = shutil.copytree(model_dir, str(tmp_path / "model"))
  page.build_context(dataset_lib.load(shards), model, "validation", **PAGE_OPTIONS)
  write_audit(shards, copies_of(chosen[:1], by_hand))

  def no_new_pass(*args, **kwargs):
    raise AssertionError("the report scored the split again")

  monkeypatch.setattr(passes, "score_split", no_new_pass)
  again = page.build_context(dataset_lib.load(shards), model, "validation", **PAGE_OPTIONS)
  rows = {(row["method"], row["which"]): row for row in again["metrics"]["rows"]}
  clean = rows[("central crop", "without the 1 image also in training")]
  assert clean["count"] == 8
  assert clean["top1"] == pytest.approx(1 - figures(by_hand, chosen[:1])[0])
