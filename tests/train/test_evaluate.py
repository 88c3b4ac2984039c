"""Tests of train/evaluate.py: every image scored once, errors as an independent count gives them."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from common import manifest as manifest_lib
from common import schema
from train.errors import TrainingError
from train.evaluation import scoring
from train.evaluation import trained
from train.model_dir import restore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _central_crop_accuracy(model_dir, manifest):
  """Top-1 accuracy recomputed with NumPy crops and the restored Keras model, record by record."""
  model, _, _ = restore.restore_model(model_dir)
  mean = np.load(os.path.join(model_dir, "mean.npy"))
  start = (manifest.image_size - 227) // 2
  hits = count = 0
  for path in manifest.shard_paths("validation"):
    for record in tf.data.TFRecordDataset(path):
      features = schema.parse_example(record)
      pixels = tf.io.decode_jpeg(features[schema.ENCODED], channels=3).numpy().astype(np.float32)
      crop = (pixels - mean)[start:start + 227, start:start + 227]
      logits = model(crop[np.newaxis], training=False).numpy()[0]
      hits += int(np.argmax(logits) == features[schema.LABEL].numpy())
      count += 1
  return hits / count, count


def test_evaluate_scores_every_validation_image_once(trained_dir, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  result = trained.evaluate_model(manifest, trained_dir, "validation", batch_size=4)
  accuracy, count = _central_crop_accuracy(trained_dir, manifest)
  assert result["count"] == count == manifest.num_examples("validation")
  assert result["top1"] == pytest.approx(accuracy)
  assert result["checkpoint"].startswith(os.path.join(trained_dir, "best"))
  ten_crop = trained.evaluate_model(manifest, trained_dir, "validation", ten_crop=True,
                                    batch_size=4)
  assert ten_crop["count"] == count and 0 <= ten_crop["top1"] <= 1


def test_a_count_different_from_the_manifest_fails(trained_dir, dataset_dir, tmp_path):
  shards = shutil.copytree(dataset_dir, str(tmp_path / "shards"))
  path = os.path.join(shards, manifest_lib.MANIFEST_NAME)
  with open(path) as f:
    manifest = json.load(f)
  manifest["splits"]["validation"]["num_examples"] += 1
  with open(path, "w") as f:
    f.write(manifest_lib.dumps(manifest))
  with pytest.raises(TrainingError, match="scored 9 images, the manifest lists 10"):
    trained.evaluate_model(dataset_lib.load(shards), trained_dir, "validation", batch_size=4)


def test_cli_prints_the_score_and_what_the_audit_found(trained_dir, dataset_dir):
  result = subprocess.run([
      sys.executable, "-m", "train.evaluate", f"--shards={dataset_dir}",
      f"--model_dir={trained_dir}", "--batch_size=4"
  ], cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2 and lines[0].startswith("validation: top-1 error ")
  assert "on 9 images (central crop" in lines[0]
  # The test dataset is audited and holds no duplicates: said, not left for the user to guess.
  assert lines[1] == "validation: the audit found no image also in training"


def test_named_batches_read_each_shard_once_and_pair_names_with_their_records(
    dataset_dir, monkeypatch):
  manifest = dataset_lib.load(dataset_dir)
  expected = [[(schema.parse_example(r)[schema.FILENAME].numpy().decode(),
                int(schema.parse_example(r)[schema.LABEL]))
               for r in tf.data.TFRecordDataset(p)]
              for p in manifest.shard_paths("validation")]
  opened = []
  real_reader = tf.data.TFRecordDataset

  def counting_reader(*args, **kwargs):
    opened.append(args[0])
    return real_reader(*args, **kwargs)

  monkeypatch.setattr(tf.data, "TFRecordDataset", counting_reader)
  got = [[] for _ in expected]
  for shard, record, names, batch in scoring.named_batches(manifest, "validation", batch_size=3):
    assert record == len(got[shard]) and "filename" not in batch
    got[shard] += zip(names, batch["label"].numpy().tolist())
  assert got == expected
  assert len(opened) == len(expected)  # one reader per shard, no second pass for the names
