"""ImageNet-ReaL: the pessimistic set rule, real.json's checks, and scoring a 1,000-class split whose
files are named ILSVRC2012_val_*.JPEG, against a real.json shaped like the real one."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from common import dataset as dataset_lib
from train import config as config_lib
from train.evaluation import metrics
from train.evaluation import real_labels
from train.evaluation import scoring
from train.evaluation import trained
from train.model_dir import directory as model_dir_lib
from train.model_dir import restore
from train import preparation
from train.report import page
from train.run import train
from tests import datasets

# ILSVRC-2012's 1,000 WNIDs, from TFDS's imagenet2012 (a test dependency), read without importing it.
SYNSETS = (
    pathlib.Path(importlib.util.find_spec("tensorflow_datasets").submodule_search_locations[0]) /
    "datasets" / "imagenet2012" / "labels.txt").read_text().split()
# Validation numbers of the sample: 1 and 50,000 are the two ends, where an off-by-one falls out.
NUMBERS = [1, 2, 7, 100, 4_999, 12_345, 30_000, 49_999, 50_000, 777]


def top_k_oracle(scores, labels, k):
  """The rule spelled out: sort with ties broken against the model, then look at the first k."""
  scores = np.asarray(scores, np.float64)
  if np.isnan(scores).any() or not labels:
    return False
  best = max(scores[c] for c in labels)
  if not np.isfinite(best):
    return False
  # Worst order: by score descending, classes outside the set before those in it at equal score.
  order = sorted(range(len(scores)), key=lambda c: (-scores[c], c in labels))
  return any(c in labels for c in order[:k])


def test_one_label_is_metrics_top_k_correct():
  rng = np.random.default_rng(0)
  logits = rng.integers(0, 3, (300, 7)).astype(np.float32)  # many ties
  logits[0, 2], logits[1] = np.nan, np.inf
  logits[2, :3] = -np.inf
  labels = rng.integers(0, 7, 300)
  sets = np.eye(7, dtype=bool)[labels]
  for k in range(1, 8):
    np.testing.assert_array_equal(
        real_labels.top_k_correct_any(logits, sets, k).numpy(),
        metrics.top_k_correct(logits, labels, k).numpy())


def test_sets_follow_the_rule_ties_and_non_finite_values():
  rng = np.random.default_rng(1)
  scores = rng.integers(0, 4, (400, 8)).astype(np.float32)
  scores[rng.random(scores.shape) < 0.03] = np.nan
  scores[rng.random(scores.shape) < 0.03] = np.inf
  scores[rng.random(scores.shape) < 0.05] = -np.inf
  sets = rng.random((400, 8)) < 0.3
  for k in (1, 2, 5):
    got = real_labels.top_k_correct_any(scores, sets, k).numpy()
    want = [top_k_oracle(s, set(np.flatnonzero(m)), k) for s, m in zip(scores, sets)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "row, labels, k, expected",
    [
        ([5, 5, 1, 1], [1], 1, False),  # tied with a class outside the set: a miss at top-1
        ([5, 5, 1, 1], [0, 1], 1, True),  # both tied classes are right
        ([5, 5, 1, 1], [1], 2, True),
        ([3, 3, 3, 3, 3, 3], [0, 1], 4, False),  # constant scores: four others as high
        ([3, 3, 3, 3, 3, 3], [0, 1], 5, True),
        ([1, np.inf, 0], [1, 0], 3, False),  # an overflow in the set
        ([np.inf, 1, 0], [1], 2, True),  # +inf outside counts as higher
        ([-np.inf, -np.inf, 0], [0, 1], 3, False),
        ([1, 2, np.nan], [1], 3, False),
        ([1, 2, 3], [], 3, False),
    ])
def test_hand_made_cases(row, labels, k, expected):
  sets = np.zeros((1, len(row)), bool)
  sets[0, labels] = True
  scores = np.array([row], np.float32)
  assert bool(real_labels.top_k_correct_any(scores, sets, k).numpy()[0]) is expected


def write_real_json(path, entries):
  with open(path, "w") as f:
    json.dump(entries, f)
  return str(path)


def absent_entries(seed=0):
  """50,000 entries as real.json has them: zero to three labels each."""
  rng = np.random.default_rng(seed)
  return [sorted(set(rng.integers(0, 1000, rng.integers(0, 4)).tolist())) for _ in range(50_000)]


@pytest.mark.parametrize("entries, message", [
    ([[1]] * 49_999, "found 49999"),
    ({"a": 1}, "found dict"),
    ([[1]] * 49_999 + [[1000]], "entry 50000"),
    ([[True]] + [[1]] * 49_999, "entry 1 "),
    ([3] + [[1]] * 49_999, "entry 1 "),
])
def test_load_refuses_what_is_not_real_json(entries, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    real_labels.load(write_real_json(tmp_path / "real.json", entries))


@pytest.fixture(scope="module")
def ilsvrc_like(tmp_path_factory):
  """A 1,000-class dataset whose validation files are named as ILSVRC-2012's, and a model."""
  directory = str(tmp_path_factory.mktemp("ilsvrc_like"))
  rng = np.random.default_rng(0)
  train_records = [(f"train/{SYNSETS[i]}/{SYNSETS[i]}_{i}.JPEG", i) for i in range(8)]
  validation = [(f"val/ILSVRC2012_val_{n:08d}.JPEG", int(rng.integers(0, 1000))) for n in NUMBERS]
  datasets.write_dataset(directory, SYNSETS, {"train": train_records, "validation": validation},
                         num_shards={"validation": 3})
  model_dir = str(tmp_path_factory.mktemp("ilsvrc_model") / "model")
  config = config_lib.Config(width=0.0625, batch_size=4, epochs=1, max_steps=1, log_every=1,
                             checkpoint_every=100, shuffle_buffer=8, seed=0)
  train.train_and_evaluate(config, dataset_lib.load(directory), model_dir)
  return dataset_lib.load(directory), model_dir


def central_probabilities(manifest, model_dir):
  """{validation number: the model's central-crop probabilities}, computed here on their own."""
  model, _, _ = restore.restore_model(model_dir)
  prep = preparation.Preparation.from_stats(model_dir_lib.read_mean(model_dir, manifest.image_size),
                                            manifest.stats)
  result = {}
  for _, _, batch_names, batch in scoring.named_batches(manifest, "validation", batch_size=4):
    probabilities, _ = scoring.score_batch(model, batch, prep)
    for name, row in zip(batch_names, probabilities.numpy()):
      result[int(name[-13:-5])] = row
  return result


@pytest.fixture(scope="module")
def real_json(ilsvrc_like, tmp_path_factory):
  """Labels that tell the right pairing from its neighbours: each present image's entry holds its
  top prediction (a hit) or only classes outside its top five (a miss), or nothing (left out);
  the entries just before and after hold classes outside its top five."""
  manifest, model_dir = ilsvrc_like
  probabilities = central_probabilities(manifest, model_dir)
  entries, expected = absent_entries(), {}
  for number in NUMBERS:
    order = np.argsort(-probabilities[number])
    for neighbour in (number - 2, number):
      if 0 <= neighbour < 50_000 and neighbour + 1 not in NUMBERS:
        entries[neighbour] = sorted(order[500:503].tolist())
  for position, number in enumerate(NUMBERS):
    kind = ("hit1", "hit5", "miss", "empty")[position % 4]
    order = np.argsort(-probabilities[number])
    entries[number - 1] = {
        "hit1": [int(order[0]), int(order[900])], "hit5": [int(order[3])],
        "miss": sorted(order[10:12].tolist()), "empty": []
    }[kind]
    expected[number] = kind
  path = write_real_json(tmp_path_factory.mktemp("real") / "real.json", entries)
  return real_labels.load(path), expected


def test_evaluate_scores_real_on_the_images_the_split_holds(ilsvrc_like, real_json):
  manifest, model_dir = ilsvrc_like
  real, expected = real_json
  plain = trained.evaluate_model(manifest, model_dir, "validation", batch_size=4)
  result = trained.evaluate_model(manifest, model_dir, "validation", batch_size=4, real=real)
  assert result["count"] == plain["count"] == len(NUMBERS)
  assert (result["top1"], result["top5"]) == (plain["top1"], plain["top5"])
  assert result["loss"] == pytest.approx(plain["loss"], rel=1e-5)
  kinds = list(expected.values())
  labelled = len(kinds) - kinds.count("empty")
  assert result["real_count"] == labelled
  assert result["real_left_out"] == kinds.count("empty")
  assert result["real_top1"] == pytest.approx(kinds.count("hit1") / labelled)
  assert result["real_top5"] == pytest.approx(
      (kinds.count("hit1") + kinds.count("hit5")) / labelled)


def test_the_report_shows_the_same_real_figures(ilsvrc_like, real_json, tmp_path):
  manifest, model_dir = ilsvrc_like
  real, expected = real_json
  context = page.build_context(manifest, model_dir, "validation", batch_size=4, neighbour_pool=0,
                               num_queries=1, num_neighbours=1, num_predictions=2, num_confusions=1,
                               real=real)
  rows = {row["method"]: row for row in context["metrics"]["rows"]}
  kinds = list(expected.values())
  labelled = len(kinds) - kinds.count("empty")
  assert rows["ReaL, central crop"]["count"] == labelled
  assert rows["ReaL, central crop"]["top1"] == pytest.approx(1 - kinds.count("hit1") / labelled)
  assert "ReaL, ten crops" in rows
  assert context["metrics"]["real_left_out"] == kinds.count("empty")
  html = page.render(context)
  assert "ReaL, central crop" in html and "left out of the ReaL rows" in html


def test_refusals_before_anything_is_scored(ilsvrc_like, real_json, dataset_dir):
  manifest, model_dir = ilsvrc_like
  real, _ = real_json
  with pytest.raises(ValueError, match="this dataset has 3"):
    real_labels.check_classes(dataset_lib.load(dataset_dir))
  renamed = dataset_lib.Manifest(manifest.directory, json.loads(json.dumps(manifest.data)))
  renamed.data["classes"][5]["synset"] = "dog"
  with pytest.raises(ValueError, match="'dog' is not an ILSVRC-2012 WNID"):
    real_labels.check_classes(renamed)
  # A WNID in its place that ILSVRC-2012 does not have (sorted order kept), and two swapped.
  renamed.data["classes"][5]["synset"] = SYNSETS[5][:-1] + str((int(SYNSETS[5][-1]) + 1) % 10)
  assert SYNSETS[4] < renamed.synsets[5] < SYNSETS[6] and renamed.synsets[5] not in SYNSETS
  with pytest.raises(ValueError, match="not ILSVRC-2012's"):
    real_labels.check_classes(renamed)
  renamed.data["classes"][5]["synset"], renamed.data["classes"][6]["synset"] = SYNSETS[6], SYNSETS[
      5]
  with pytest.raises(ValueError, match=f"class 6 \\({SYNSETS[5]}\\) follows {SYNSETS[6]}"):
    real_labels.check_classes(renamed)
  with pytest.raises(ValueError, match="file names are not"):
    trained.evaluate_model(manifest, model_dir, "train", batch_size=4, real=real)
  with pytest.raises(ValueError, match="appears twice"):
    real.indices(["val/ILSVRC2012_val_00000003.JPEG", "val/n1/ILSVRC2012_val_00000003.JPEG"], set())
  assert real.indices(["val/n01440764/ILSVRC2012_val_00000003.JPEG"], set()).tolist() == [2]


def test_command_line_prints_scored_and_left_out(ilsvrc_like, real_json):
  manifest, model_dir = ilsvrc_like
  real, expected = real_json
  result = subprocess.run([
      sys.executable, "-m", "train.evaluate", f"--shards={manifest.directory}",
      f"--model_dir={model_dir}", f"--real_labels={real.path}", "--batch_size=4"
  ], capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  kinds = list(expected.values())
  lines = result.stdout.strip().splitlines()
  assert lines[0].startswith("validation: top-1 error ")
  [real_line] = [line for line in lines if line.startswith("validation ReaL: ")]
  assert real_line.startswith("validation ReaL: top-1 error ")
  assert (f"on {len(kinds) - kinds.count('empty')} images; {kinds.count('empty')} left out "
          f"(no ReaL label); the split holds {len(NUMBERS)} of ReaL's 50,000 images") in real_line
