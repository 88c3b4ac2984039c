"""Tests for train/sections.py: each section's data, on hand-made arrays."""

import numpy as np
import pytest

from common import imagenetv2
from train.report import sections


def test_per_class_table_sums_to_the_evaluated_count_worst_first():
  labels = np.array([0, 0, 1, 1, 1, 2, 0])
  top1 = np.array([1, 0, 1, 1, 1, 0, 1], bool)
  top5 = np.array([1, 1, 1, 1, 1, 1, 1], bool)
  rows = sections.per_class_table(labels, top1, top5, ["a", "b", "c", "never seen"])
  assert sum(r["count"] for r in rows) == len(labels)
  assert [r["name"] for r in rows] == ["c", "a", "b", "never seen"]
  assert rows[1]["top1"] == pytest.approx(2 / 3)
  assert rows[-1]["count"] == 0 and rows[-1]["top1"] is None


def test_confusion_pairs_only_where_errors_happened():
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  predicted = np.array([0, 1, 1, 1, 2, 2, 2, 0])
  pairs = sections.confusion_pairs(labels, predicted, max_pairs=10, max_examples=1)
  assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [(0, 1, 2), (1, 2, 1),
                                                                      (2, 0, 1)]
  assert pairs[0]["examples"] == [1]  # capped at max_examples, in image order
  for pair in pairs:
    for index in pair["examples"]:
      assert labels[index] == pair["true"] != predicted[index] == pair["predicted"]
  assert sections.confusion_pairs(labels, labels, 10, 4) == []


def test_conv1_tiles_come_from_the_kernel_one_row_per_tower_in_channel_order():
  size, filters, groups, scale, gap = 3, 8, 2, 2, 1
  kernel = np.zeros([size, size, 3, filters], np.float32)
  for index in range(filters):
    # Filter i has one bright pixel, in colour channel i % 3, at row i % size of its tile.
    kernel[index % size, 0, index % 3, index] = 1.0
  canvas = sections.conv1_tiles(kernel, groups, scale=scale, gap=gap)
  step, per_row = size + gap, filters // groups
  assert canvas.shape == ((groups * step + gap) * scale, (per_row * step + gap) * scale, 3)
  for index in range(filters):
    row, col = divmod(index, per_row)  # tower = row: channels [0, 4) then [4, 8), as conv2 reads
    top, left = (gap + row * step) * scale, (gap + col * step) * scale
    tile = canvas[top:top + size * scale:scale, left:left + size * scale:scale]
    expected = np.zeros([size, size, 3], np.uint8)
    expected[index % size, 0, index % 3] = 255
    np.testing.assert_array_equal(tile, expected)


def test_conv1_tiles_refuse_kernels_that_do_not_split():
  with pytest.raises(ValueError, match="2 rows"):
    sections.conv1_tiles(np.zeros([3, 3, 3, 5]), groups=2)


def test_nearest_neighbours_are_truly_nearest():
  pool = np.array([[0, 0], [10, 0], [0, 3], [4, 4], [-1, 0]], np.float32)
  queries = np.array([[0, 0.4], [9, 1]], np.float32)
  indices, distances = sections.nearest_neighbours(queries, pool, k=3)
  np.testing.assert_array_equal(indices, [[0, 4, 2], [1, 3, 0]])
  np.testing.assert_allclose(distances[0], [0.4, np.hypot(1, 0.4), 2.6], rtol=1e-6)
  rng = np.random.default_rng(0)
  pool, queries = rng.normal(size=(50, 16)), rng.normal(size=(7, 16))
  indices, distances = sections.nearest_neighbours(queries, pool, k=50)
  brute = np.linalg.norm(queries[:, None] - pool[None], axis=-1)
  np.testing.assert_array_equal(indices[:, 0], brute.argmin(axis=1))
  np.testing.assert_allclose(distances, np.sort(brute, axis=1), rtol=1e-6)


def _manifest(num_classes, args=None, test_images=0):
  return {
      "classes": [{"label": i} for i in range(num_classes)], "args": args or {},
      "splits": {"validation": {"num_examples": 5}, "test": {"num_examples": test_images}}
  }


def test_the_paper_row_appears_only_for_ilsvrc_on_its_own_split():
  scores = {
      "label": np.zeros(4), "central_top1": np.array([1, 1, 0, 0], bool),
      "central_top5": np.ones(4, bool)
  }
  release = sections.ilsvrc_release(
      _manifest(1000, {"devkit_meta": "/data/ILSVRC2012_devkit_t12/data/meta.mat"}))
  assert release == "2012"
  metrics = sections.final_metrics(scores, release, "validation")
  assert metrics["rows"] == [{
      "method": "central crop", "which": None, "top1": 0.5, "top5": 0.0, "count": 4
  }]
  assert [(r["who"], r["top1"]) for r in metrics["references"]
         ] == [("Krizhevsky et al. (2012)", 0.407),
               ("torchvision's AlexNet", pytest.approx(1 - 0.5652))]
  assert metrics["real_left_out"] is None
  assert sections.final_metrics(scores, release, "test")["references"] == []
  assert sections.ilsvrc_release(_manifest(1000, test_images=3)) == "2010"
  assert sections.ilsvrc_release(_manifest(10, {"x": "ILSVRC2012"})) is None


def test_dataset_summary_counts_skips_and_repairs_by_reason():
  data = _manifest(3)
  data["skipped"] = [{"reason": "truncated"}, {"reason": "empty"}, {"reason": "truncated"}]
  data["repaired"] = [{"fix": "cmyk_to_rgb"}]
  summary = sections.dataset_summary(data)
  assert summary["skipped"] == [("empty", 1), ("truncated", 2)]
  assert summary["repaired"] == [("cmyk_to_rgb", 1)]
  assert summary["classes"] == 3


def test_a_subset_is_named_and_gets_no_published_figures():
  data = _manifest(1000, {"devkit_meta": "/data/ILSVRC2012_devkit_t12/data/meta.mat"})
  assert sections.ilsvrc_release(data) == "2012"
  assert sections.dataset_summary(data)["subset"] is None
  # SimCLR's 1%: all 1,000 classes, but not the training set the published figures come from.
  data["subset"] = {
      "name": None, "wnids": [f"n{i:08d}" for i in range(1000)], "digest": "ab" * 32,
      "per_class": None, "train_list": "/lists/1percent.txt", "short_classes": {}, "unmatched": []
  }
  assert sections.ilsvrc_release(data) is None
  assert sections.dataset_summary(data)["subset"] == (
      "1000 classes, training files of /lists/1percent.txt (digest abababababab)")
  data["subset"].update(name="imagenette", wnids=data["subset"]["wnids"][:10], per_class=50,
                        train_list=None)
  assert sections.dataset_summary(data)["subset"] == (
      "imagenette (10 classes), 50 training images per class (digest abababababab)")


def test_spread_sample_covers_the_range():
  np.testing.assert_array_equal(sections.spread_sample(3, 5), [0, 1, 2])
  np.testing.assert_array_equal(sections.spread_sample(101, 3), [0, 50, 100])


def _imagenetv2_manifest(num_classes, variant="threshold0.7"):
  return {
      "classes": [{"label": i} for i in range(num_classes)], "args": {"classes_from": "/d"},
      "splits": {
          "test": {"num_examples": 4, "input": imagenetv2.input_form(variant, "folder", "/v2")}
      }
  }


def test_imagenetv2_sits_beside_ilsvrc_2012_and_torchvision_on_the_same_variant():
  scores = {
      "label": np.zeros(4), "central_top1": np.array([1, 0, 0, 0], bool),
      "central_top5": np.ones(4, bool)
  }
  data = _imagenetv2_manifest(1000)
  # A test split of 1,000 classes would otherwise read as ILSVRC-2010's test set.
  assert sections.ilsvrc_release(data) is None
  variant = sections.comparable_variant(data)
  assert variant == "threshold0.7"
  metrics = sections.final_metrics(scores, None, "test", variant)
  assert [(r["on"], r["top1"]) for r in metrics["references"]
         ] == [("ILSVRC-2012 validation set, one network (Table 2)", 0.407),
               ("ILSVRC-2012 validation", pytest.approx(1 - 0.5652)),
               ("ImageNetV2 Threshold0.7", pytest.approx(1 - 0.5131))]
  assert sections.comparable_variant(_imagenetv2_manifest(12)) is None
  assert sections.final_metrics(scores, None, "test", None)["references"] == []


def test_real_rows_count_only_labelled_images():
  scores = {
      "label": np.zeros(4), "central_top1": np.zeros(4, bool), "central_top5": np.zeros(4, bool),
      "real_labelled": np.array([1, 1, 1, 0], bool),
      "central_real_top1": np.array([1, 0, 0, 0], bool), "central_real_top5": np.array([1, 1, 0, 0],
                                                                                       bool)
  }
  metrics = sections.final_metrics(scores, "2012", "validation")
  assert metrics["rows"][1] == {
      "method": "ReaL, central crop", "which": None, "top1": pytest.approx(2 / 3),
      "top5": pytest.approx(1 / 3), "count": 3
  }
  assert metrics["real_left_out"] == 1


def test_rows_without_the_audit_s_copies_sit_beside_the_standard_ones():
  scores = {
      "label": np.zeros(4), "filename": np.array(["a", "b", "c",
                                                  "d"]), "central_top1": np.array([1, 1, 0, 0],
                                                                                  bool),
      "central_top5": np.ones(4, bool), "real_labelled": np.ones(4, bool),
      "central_real_top1": np.ones(4, bool), "central_real_top5": np.ones(4, bool)
  }
  metrics = sections.final_metrics(scores, "2012", "validation", duplicates=frozenset({"a"}))
  assert [(r["method"], r["which"], r["top1"], r["count"]) for r in metrics["rows"]
         ] == [("central crop", "as released", 0.5, 4),
               ("central crop", "without the 1 image also in training", pytest.approx(2 / 3), 3),
               ("ReaL, central crop", None, 0.0, 4)]
  assert metrics["duplicates"] == {"left_out": 1, "which": "without the 1 image also in training"}
  found_none = sections.final_metrics(scores, "2012", "validation", duplicates=frozenset())
  assert [r["which"] for r in found_none["rows"]] == [None, None]
  assert found_none["duplicates"] == {"left_out": 0, "which": None}
  assert sections.final_metrics(scores, "2012", "validation")["duplicates"] is None
  assert sections.dataset_summary(_manifest(3))["audit"] is None
