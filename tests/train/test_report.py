"""Tests for train.report's passes, cache and page on the tiny trained model of conftest.py."""

import base64
import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.util import event_pb2

from common import dataset as dataset_lib
from train.evaluation import trained
from train.model_dir import restore
from train.report import curves
from train.report import page
from train.report import passes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE_OPTIONS = dict(batch_size=4, neighbour_pool=8, num_queries=2, num_neighbours=3,
                    num_predictions=4, num_confusions=3)


@pytest.fixture(scope="module")
def model_copy(trained_dir, tmp_path_factory):
  """A copy of the trained model, so the report's cache does not touch the shared one.

  Four steps leave the narrow network's fc7 dead (constant logits), which would hide a wrong crop
  or image order; He-scaled random weights make every crop score differently.
  """
  model_dir = shutil.copytree(trained_dir, str(tmp_path_factory.mktemp("report") / "model"))
  model, _, _ = restore.restore_model(model_dir)
  rng = np.random.default_rng(0)
  for variable in model.trainable_variables:
    fan_in = np.prod(variable.shape[:-1]) if len(variable.shape) > 1 else 1
    variable.assign(rng.normal(0, np.sqrt(2 / fan_in), variable.shape).astype(np.float32))
  # Saved as the newest checkpoint of best/, the one evaluate and the report restore.
  tf.train.Checkpoint(model=model).save(os.path.join(model_dir, "best", "lively"))
  return model_dir


@pytest.fixture(scope="module")
def scores(model_copy, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  scorer = passes.Scorer(model_copy, manifest)
  return passes.score_split(scorer, manifest, "validation", batch_size=4, feature_rows=[1, 7])


def test_per_image_scores_match_train_evaluate(scores, model_copy, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  for mode, ten_crop in (("central", False), ("ten_crop", True)):
    result = trained.evaluate_model(manifest, model_copy, "validation", ten_crop=ten_crop,
                                    batch_size=4)
    assert len(scores[f"{mode}_top1"]) == result["count"] == manifest.num_examples("validation")
    assert scores[f"{mode}_top1"].mean() == pytest.approx(result["top1"], abs=1e-6)
    assert scores[f"{mode}_top5"].mean() == pytest.approx(result["top5"], abs=1e-6)
    assert scores[f"{mode}_loss"].mean() == pytest.approx(result["loss"], rel=1e-5)


def test_file_names_line_up_with_their_records(scores):
  # conftest names every file "<split>/<label>/<index>.JPEG".
  labels_from_names = [int(name.split("/")[1]) for name in scores["filename"]]
  np.testing.assert_array_equal(labels_from_names, scores["label"])
  np.testing.assert_array_equal(scores["feature_rows"], [1, 7])
  assert scores["features"].shape[0] == 2


def test_passes_are_cached_and_invalidated_by_a_new_checkpoint(model_copy, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  scorer = passes.Scorer(model_copy, manifest)
  calls = []
  compute = lambda: calls.append(1) or {"x": np.arange(3)}  # noqa: E731
  key = passes.cache_key(scorer, manifest, "validation", {"a": 1})
  first = passes.cached(model_copy, "test", key, compute)
  again = passes.cached(model_copy, "test", key, compute)
  np.testing.assert_array_equal(first["x"], again["x"])
  assert len(calls) == 1
  assert passes.cache_key(scorer, manifest, "validation", {"a": 2}) != key
  os.utime(scorer.checkpoint + ".index", ns=(1, 1))  # as if the checkpoint were rewritten
  new_key = passes.cache_key(scorer, manifest, "validation", {"a": 1})
  assert new_key != key
  passes.cached(model_copy, "test", new_key, compute)
  assert len(calls) == 2
  cache = os.listdir(os.path.join(model_copy, passes.CACHE_DIR))
  assert [name for name in cache if name.startswith("test-")] == [f"test-{new_key}.npz"]


@pytest.fixture(scope="module")
def context(model_copy, dataset_dir):
  return page.build_context(dataset_lib.load(dataset_dir), model_copy, "validation", **PAGE_OPTIONS)


def test_page_sections_hold_the_model_s_data(context, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  table = context["classes_top"] + context["classes_rest"]
  assert sum(row["count"] for row in table) == manifest.num_examples("validation")
  assert [row["top1"] for row in table] == sorted(row["top1"] for row in table)
  assert context["pool"]["images"] == 8  # 4 from each of the 2 training shards
  assert len(context["figure4"]) == 2 and len(context["figure4"][0]["neighbours"]) == 3
  assert context["summary"]["steps"] == 4 and context["summary"]["epochs"] == 1
  kernel_rows = Image.open(io.BytesIO(_data(context["figure3"])))
  assert kernel_rows.size[0] > kernel_rows.size[1]  # one row per tower


def _data(uri):
  return base64.b64decode(uri.split(",", 1)[1])


def test_names_are_escaped(context):
  hostile = dict(context, classes_top=[dict(context["classes_top"][0], name="<script>x</script>")])
  html = page.render(hostile)
  assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_page_stays_small_at_1000_classes(context):
  # Worst case thumbnails: noise does not compress, unlike the tiny model's flat colours.
  rng = np.random.default_rng(0)
  thumb = page.jpeg_uri(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))
  rows = [
      dict(label=i, name=f"class number {i}, a long descriptive name", count=50, top1=0.5, top5=0.8)
      for i in range(1000)
  ]
  prediction = dict(
      context["predictions"][0], image=thumb, top=[
          dict(name=f"class number {i}, a long descriptive name", probability=0.1, correct=False)
          for i in range(5)
      ])
  big = dict(
      context, classes_top=rows[:20], classes_rest=rows[20:], predictions=[prediction] * 24,
      confusions=[
          dict(context["confusions"][0] if context["confusions"] else {}, true_name="a",
               predicted_name="b", count=4, images=[{"image": thumb, "filename": "f"}] * 4)
      ] * 12, figure4=[{
          "query": prediction,
          "neighbours": [{"image": thumb, "label": "x", "filename": "f", "distance": 1.0}] * 6
      }] * 6)
  size = len(page.render(big).encode())
  assert size < 10 * 2**20, size


def test_cli_writes_the_page_and_prints_its_path(model_copy, dataset_dir, tmp_path):
  output = str(tmp_path / "page.html")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([
      sys.executable, "-m", "train.report", f"--model_dir={model_copy}", f"--shards={dataset_dir}",
      f"--output={output}", "--batch_size=4", "--neighbour_pool=8"
  ], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == output
  html = open(output, encoding="utf-8").read()
  assert len(re.findall(r"<h2 ", html)) == 8


def test_cli_mistake_is_one_line(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-m", "train.report", f"--model_dir={tmp_path}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert f"{tmp_path}/config.json: not found" in result.stderr


def test_a_corrupt_record_is_named_by_its_shard(trained_dir, writable_dataset_dir, tmp_path):
  manifest = dataset_lib.load(writable_dataset_dir)
  path = manifest.shard_paths("validation")[0]
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # same size: the manifest still loads
  open(path, "wb").write(bytes(data))
  model_dir = shutil.copytree(trained_dir, str(tmp_path / "model"))
  with pytest.raises(ValueError, match=re.escape(path)):
    page.build_context(dataset_lib.load(writable_dataset_dir), model_dir, "validation",
                       **PAGE_OPTIONS)


def test_wall_time_spans_the_first_to_the_last_scalar(tmp_path):
  with tf.io.TFRecordWriter(str(tmp_path / "events.out.tfevents.1")) as writer:
    for wall_time, step in ((1000.0, 1), (1090.5, 2), (1010.0, 3)):
      event = event_pb2.Event(wall_time=wall_time, step=step)
      event.summary.value.add(tag="train/loss", simple_value=1.0)
      writer.write(event.SerializeToString())
  assert curves.wall_time_span(str(tmp_path)) == pytest.approx(90.5)
  assert curves.wall_time_span(str(tmp_path / "none")) is None
