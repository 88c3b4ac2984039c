"""Both stages on the sample data: build shards, train a few steps, evaluate, export, predict, plot.

Stage 2 reads only what stage 1 wrote, so this is the test that pins one to the other.
"""

import json
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from common import dataset as dataset_lib
from sample import make_sample_data
from train import config as config_lib
from train import input_pipeline
from train import model as model_lib
from train import preparation
from train.run import schedule
from train.run import train
from tests import helpers


def _run(module, *args):
  result = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, timeout=900)
  assert result.returncode == 0, f"{module} failed:\n{result.stderr[-3000:]}"
  return result


def test_sample_data_to_prediction(tmp_path):
  info = make_sample_data.make_sample_tree(tmp_path / "imagenet", images_per_class_train=3,
                                           images_per_class_val=2)
  built = helpers.build_dataset(tmp_path / "imagenet", tmp_path / "shards")
  num_val = built["splits"]["validation"]["num_examples"]
  assert num_val == len(info.images["validation"]) == 20

  _run("train.main", "--shards", tmp_path / "shards", "--model_dir", tmp_path / "model",
       "--batch_size=8", "--max_steps=3", "--log_every=1", "--learning_rate=0.001")
  config = json.loads((tmp_path / "model" / "config.json").read_text())
  assert [c["synset"] for c in config["classes"]] == list(info.classes)
  assert config["model"]["num_classes"] == 10

  evaluation = _run("train.evaluate", "--shards", tmp_path / "shards", "--model_dir",
                    tmp_path / "model", "--split=validation")
  assert f"{num_val} images" in evaluation.stdout + evaluation.stderr

  _run("train.export", "--model_dir", tmp_path / "model", "--output", tmp_path / "saved")
  photo = tmp_path / "imagenet" / info.images["validation"][0][0]
  prediction = _run("train.predict", "--model", tmp_path / "saved", photo)
  ranked = re.findall(r"^\s+\d\.\s+(n\d{8})\s+([0-9.]+)", prediction.stdout, re.MULTILINE)
  assert len(ranked) == 5 and {w for w, _ in ranked} <= set(info.classes), prediction.stdout
  probabilities = [float(p) for _, p in ranked]
  assert probabilities == sorted(probabilities, reverse=True)

  _run("train.plot", "--model_dir", tmp_path / "model", "--output", tmp_path / "curves.png")
  assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_steps_on_sample_shards_lower_the_loss(tmp_path):
  make_sample_data.make_sample_tree(tmp_path / "imagenet", images_per_class_train=2,
                                    images_per_class_val=1, broken_files=False)
  helpers.build_dataset(tmp_path / "imagenet", tmp_path / "shards")
  manifest = dataset_lib.load(str(tmp_path / "shards"))
  config = config_lib.Config(batch_size=8, dropout=0.0, learning_rate=0.0001, seed=0)
  tf.keras.utils.set_random_seed(0)
  model = model_lib.alexnet(manifest.num_classes, config.groups, config.dropout, config.width)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
  # The evaluation order is deterministic, so every run takes the same eight images.
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=8,
                                                            training=False))))
  step = tf.function(lambda b: train.train_step(model, optimizer, b, prep, config, state["rng"]))
  losses = [float(step(batch)[0]) / 8 for _ in range(10)]
  # The paper's initialisation starts near uniform over the classes: ln(10) = 2.30.
  assert abs(losses[0] - np.log(10)) < 0.5, losses
  assert np.mean(losses[-3:]) < 0.8 * losses[0], losses
