"""Tests for train/model_dir/restore.py, train/export.py and train/predict.py on a tiny fake trained model."""

import io
import json
import logging
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from preprocess.conversion import convert

from train import export
from train import input_pipeline
from train import model as model_lib
from train.model_dir import directory as model_dir_lib
from train.model_dir import restore
from train import predict

NUM_CLASSES = 3
IMAGE_SIZE = 256
CROP_OFFSET = (IMAGE_SIZE - input_pipeline.CROP_SIZE) // 2
CLASSES = [{"label": i, "synset": f"n0123456{i}", "name": f"class {i}, thing {i}"}
           for i in range(NUM_CLASSES)]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _encode(pixels, image_format, mode=None):
  buffer = io.BytesIO()
  Image.fromarray(pixels, mode).save(buffer, format=image_format, quality=95)
  return buffer.getvalue()


def _blocky_pixels(rng, height, width):
  """Random 8x8 blocks: sharp enough that a crop off by a pixel shows, smooth enough to resize."""
  blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
  return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]


def _make_sensitive(model, rng):
  """He-initialises the weights and scales fc8 so logits differ by several units between images.

  With the paper's N(0, 0.01) init every probability is about 1/3 whatever the input, and a
  comparison of probabilities would not notice a wrong crop or mean.
  """
  for layer in model.layers:
    if getattr(layer, "kernel", None) is not None:
      kernel = layer.kernel
      fan_in = np.prod(kernel.shape[:-1])
      kernel.assign(rng.normal(0, np.sqrt(2 / fan_in), kernel.shape).astype(np.float32))
  inputs = rng.uniform(-128, 128, (4, input_pipeline.CROP_SIZE, input_pipeline.CROP_SIZE, 3))
  logits = model(inputs.astype(np.float32)).numpy()
  fc8 = model.get_layer("fc8")
  fc8.kernel.assign(fc8.kernel * (3.0 / (logits.std() + 1e-6)))


def write_model_dir(directory, rng, with_checkpoint=True):
  """Writes a fake trained model directory; returns the Keras model and the mean image."""
  os.makedirs(directory, exist_ok=True)
  model_config = {"num_classes": NUM_CLASSES, "groups": 2, "width": 0.0625, "dropout": 0.5}
  model = model_lib.alexnet(**model_config)
  _make_sensitive(model, rng)
  if with_checkpoint:
    checkpoint = tf.train.Checkpoint(model=model, optimizer=keras.optimizers.SGD(),
                                     step=tf.Variable(5))
    tf.train.CheckpointManager(checkpoint, os.path.join(directory, "ckpt"), max_to_keep=2).save()
  config = {
      "model": model_config, "classes": CLASSES, "image_size": IMAGE_SIZE,
      "input_size": input_pipeline.CROP_SIZE, "stats": {}, "flags": {}
  }
  with open(os.path.join(directory, model_dir_lib.CONFIG_NAME), "w") as f:
    json.dump(config, f)
  mean_image = rng.uniform(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
  np.save(os.path.join(directory, model_dir_lib.MEAN_NAME), mean_image)
  return model, mean_image


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A fake model directory and its SavedModel export, shared by the tests that only read them."""
  model_dir = str(tmp_path_factory.mktemp("model"))
  model, mean_image = write_model_dir(model_dir, np.random.default_rng(0))
  saved_model_dir = os.path.join(str(tmp_path_factory.mktemp("export")), "saved_model")
  export.export_model(model_dir, saved_model_dir)
  return {
      "model_dir": model_dir, "model": model, "mean": mean_image, "saved_model": saved_model_dir,
      "classifier": predict.load_classifier(saved_model_dir)
  }


def _keras_probabilities(model, mean_image, stored_images, offset=CROP_OFFSET):
  """What the trainer's evaluation computes: the central crop of a stored image minus the mean."""
  end = offset + input_pipeline.CROP_SIZE
  crops = np.stack(stored_images)[:, offset:end, offset:end].astype(np.float32)
  inputs = crops - mean_image[offset:end, offset:end]
  return tf.nn.softmax(model(inputs, training=False)).numpy()


def test_serving_equals_keras_model_on_stored_size_images(trained):
  rng = np.random.default_rng(1)
  png_pixels, jpeg_pixels = (_blocky_pixels(rng, IMAGE_SIZE, IMAGE_SIZE) for _ in range(2))
  jpeg = _encode(jpeg_pixels, "JPEG")
  jpeg_decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))  # as stage 1 decodes it
  outputs = trained["classifier"](images=tf.constant([_encode(png_pixels, "PNG"), jpeg]))

  expected = _keras_probabilities(trained["model"], trained["mean"], [png_pixels, jpeg_decoded])
  np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
  # The comparison can tell a wrong mean window from the right one.
  wrong_window = _keras_probabilities(trained["model"], trained["mean"], [png_pixels, jpeg_decoded],
                                      offset=0)
  assert np.abs(wrong_window - expected).max() > 1e-2


def test_serving_top5_is_sorted_and_names_classes(trained):
  rng = np.random.default_rng(2)
  images = [_encode(_blocky_pixels(rng, 300, 400), "JPEG") for _ in range(4)]
  outputs = {
      key: value.numpy() for key, value in trained["classifier"](images=tf.constant(images)).items()
  }

  probabilities = outputs["probabilities"]
  assert probabilities.shape == (4, NUM_CLASSES) and probabilities.dtype == np.float32
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
  # With 3 classes, "top 5" holds all three, most probable first.
  np.testing.assert_array_equal(outputs["top5_labels"], np.argsort(-probabilities, axis=1))
  np.testing.assert_allclose(outputs["top5_probabilities"],
                             np.take_along_axis(probabilities, outputs["top5_labels"], axis=1))
  synsets = np.array([c["synset"] for c in CLASSES])
  names = np.array([c["name"] for c in CLASSES])
  np.testing.assert_array_equal(outputs["top5_synsets"].astype(str),
                                synsets[outputs["top5_labels"]])
  np.testing.assert_array_equal(outputs["top5_names"].astype(str), names[outputs["top5_labels"]])
  with open(os.path.join(trained["saved_model"], "assets.extra", export.CLASSES_NAME)) as f:
    assert json.load(f) == CLASSES


def _pillow_stored_image(encoded):
  """Stage 1's recipe, written out with Pillow: shorter side to 256 (Lanczos), central square."""
  image = Image.open(io.BytesIO(encoded))
  if image.mode in ("RGBA", "LA"):
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
    image = background
  width, height = image.size
  if width <= height:
    new_width, new_height = IMAGE_SIZE, max(IMAGE_SIZE, round(height * IMAGE_SIZE / width))
  else:
    new_width, new_height = max(IMAGE_SIZE, round(width * IMAGE_SIZE / height)), IMAGE_SIZE
  image = image.convert("RGB").resize((new_width, new_height), convert.RESAMPLE)
  left, top = (new_width - IMAGE_SIZE) // 2, (new_height - IMAGE_SIZE) // 2
  return np.asarray(image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE)), np.float64)


@pytest.mark.parametrize(
    "height, width, image_format, mode",
    [
        (375, 500, "JPEG", "RGB"),  # landscape, downscaled
        (500, 375, "PNG", "RGB"),  # portrait
        (120, 90, "PNG", "L"),  # grayscale, upscaled
        (200, 300, "PNG", "RGBA"),  # alpha composited over white
    ])
def test_decode_and_resize_matches_stage_one(height, width, image_format, mode):
  rng = np.random.default_rng(height + width)
  pixels = _blocky_pixels(rng, height, width)
  if mode == "L":
    pixels = pixels[:, :, 0]
  elif mode == "RGBA":
    alpha = np.where(np.arange(width) < width // 3, 0, 255).astype(np.uint8)  # left third clear
    pixels = np.dstack([pixels, np.broadcast_to(alpha, (height, width))])
  encoded = _encode(pixels, image_format, mode)

  stored = export.decode_and_resize(tf.constant(encoded), IMAGE_SIZE).numpy()

  assert stored.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and stored.dtype == np.uint8
  # TF's and Pillow's Lanczos differ by rounding and at the borders; a crop off by one pixel
  # or a missed alpha composite is off by tens of grey levels on average.
  assert np.abs(stored - _pillow_stored_image(encoded)).mean() < 1.0


def test_serving_resizes_a_large_jpeg(trained):
  pixels = _blocky_pixels(np.random.default_rng(3), 375, 500)
  encoded = _encode(pixels, "JPEG")
  outputs = trained["classifier"](images=tf.constant([encoded]))
  assert outputs["probabilities"].shape == (1, NUM_CLASSES)
  expected = _keras_probabilities(trained["model"], trained["mean"],
                                  [_pillow_stored_image(encoded)])
  np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=0.05)


def _run(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=120, check=False)


def test_predict_cli_prints_top_classes_and_names_bad_files(trained, tmp_path):
  rng = np.random.default_rng(4)
  good = []
  for index in range(2):
    path = tmp_path / f"photo{index}.jpg"
    path.write_bytes(_encode(_blocky_pixels(rng, 240, 320), "JPEG"))
    good.append(str(path))
  not_image = tmp_path / "notes.jpg"
  not_image.write_text("not an image\n")
  missing = tmp_path / "missing.jpg"

  result = _run("train.predict", "--model", trained["saved_model"], good[0], str(not_image),
                good[1], str(missing))

  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  for bad, reason in ((not_image, "not a decodable image"), (missing, "cannot read")):
    (line,) = [line for line in result.stderr.splitlines() if bad.name in line]
    assert reason in line
  lines = result.stdout.splitlines()
  assert len(lines) == 2 * (1 + NUM_CLASSES)
  synsets = {c["synset"] for c in CLASSES}
  for block, path in zip((lines[:4], lines[4:]), good):
    assert block[0] == path
    rows = [line.split() for line in block[1:]]
    assert [row[0] for row in rows] == ["1.", "2.", "3."]
    assert {row[1] for row in rows} == synsets
    probabilities = [float(row[2]) for row in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)


def test_a_class_without_a_name_is_printed_by_its_wnid_once():
  block = predict.format_prediction("a.jpg", [("n01440764", "tench", 0.75),
                                              ("n03445777", "n03445777", 0.25)])
  assert block.splitlines() == ["a.jpg", "  1. n01440764  0.7500  tench", "  2. n03445777  0.2500"]


def test_classify_file_gives_expected_classes(trained, tmp_path):
  path = tmp_path / "photo.png"
  pixels = _blocky_pixels(np.random.default_rng(5), IMAGE_SIZE, IMAGE_SIZE)
  path.write_bytes(_encode(pixels, "PNG"))
  predictions = predict.classify_file(trained["classifier"], str(path))
  expected = _keras_probabilities(trained["model"], trained["mean"], [pixels])[0]
  order = np.argsort(-expected)
  assert [p[0] for p in predictions] == [CLASSES[i]["synset"] for i in order]
  assert [p[1] for p in predictions] == [CLASSES[i]["name"] for i in order]
  np.testing.assert_allclose([p[2] for p in predictions], expected[order], atol=1e-5)


def test_export_cli_refuses_model_dir_without_checkpoint(tmp_path):
  model_dir = str(tmp_path / "untrained")
  write_model_dir(model_dir, np.random.default_rng(6), with_checkpoint=False)
  result = _run("train.export", "--model_dir", model_dir, "--output", str(tmp_path / "out"))
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert len([line for line in result.stderr.splitlines() if "no checkpoint" in line]) == 1
  assert not (tmp_path / "out").exists()


def test_export_refuses_non_empty_output(trained, tmp_path):
  (tmp_path / "keep.txt").write_text("precious")
  with pytest.raises(ValueError, match="--overwrite"):
    export.export_model(trained["model_dir"], str(tmp_path))
  assert (tmp_path / "keep.txt").read_text() == "precious"
  model_dir = tmp_path / "model"
  shutil.copytree(trained["model_dir"], model_dir)
  with pytest.raises(ValueError, match="would delete"):
    export.export_model(str(model_dir), str(tmp_path), overwrite=True)
  assert (model_dir / model_dir_lib.CONFIG_NAME).exists()


def test_export_cli_keeps_a_file_at_output(trained, tmp_path):
  precious = tmp_path / "precious.txt"
  precious.write_text("important")
  result = _run("train.export", "--model_dir", trained["model_dir"], "--output", str(precious))
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert len([line for line in result.stderr.splitlines() if "precious.txt" in line]) == 1
  assert precious.read_text() == "important"


def test_export_overwrite_swaps_in_a_complete_model_and_a_failure_keeps_the_old(trained, tmp_path):
  output = tmp_path / "output"
  output.write_text("old")
  with pytest.raises(ValueError, match="no such checkpoint"):
    export.export_model(trained["model_dir"], str(output), checkpoint=str(tmp_path / "none"),
                        overwrite=True)
  assert output.read_text() == "old" and os.listdir(tmp_path) == ["output"]
  export.export_model(trained["model_dir"], str(output), overwrite=True)
  assert tf.saved_model.contains_saved_model(str(output))
  assert sorted(os.listdir(tmp_path)) == ["output"]  # No temporary left beside it.


def test_export_help_describes_what_the_code_does():
  assert "bicubic" in export.__doc__ and "Lanczos" not in export.__doc__
  assert "WebP" in export.__doc__


def test_serving_classifies_webp(trained):
  pixels = _blocky_pixels(np.random.default_rng(7), IMAGE_SIZE, IMAGE_SIZE)
  webp = _encode(pixels, "WEBP")
  decoded = np.asarray(Image.open(io.BytesIO(webp)).convert("RGB"))
  outputs = trained["classifier"](images=tf.constant([webp]))
  expected = _keras_probabilities(trained["model"], trained["mean"], [decoded])
  np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-3)


def test_export_logs_no_library_chatter(trained, tmp_path, caplog):
  from common import quiet  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  caplog.set_level(logging.INFO, logger="absl")
  export.export_model(trained["model_dir"], str(tmp_path / "saved"))
  assert "Restored alexnet" in caplog.text and "unsupported characters" not in caplog.text


def test_restore_prefers_best_and_rejects_corrupt_checkpoints(trained, tmp_path):
  model_dir = str(tmp_path / "model")
  shutil.copytree(trained["model_dir"], model_dir)
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "ckpt"))
  assert restore.find_checkpoint(model_dir) == latest
  best = tf.train.Checkpoint(model=model_lib.alexnet(NUM_CLASSES, width=0.0625))
  best_prefix = tf.train.CheckpointManager(best, os.path.join(model_dir, "best"), 1).save()
  assert restore.find_checkpoint(model_dir) == best_prefix
  assert restore.find_checkpoint(model_dir, checkpoint=latest) == latest
  with pytest.raises(ValueError, match="no such checkpoint"):
    restore.find_checkpoint(model_dir, checkpoint=latest + "9")

  for data_file in tf.io.gfile.glob(best_prefix + ".data-*"):
    with open(data_file, "r+b") as f:
      f.truncate(10)
  with pytest.raises(ValueError, match="cannot restore") as error:
    restore.restore_model(model_dir)
  assert best_prefix in str(error.value) and "\n" not in str(error.value)


def test_restore_rejects_checkpoint_without_the_network(trained, tmp_path):
  model_dir = str(tmp_path / "model")
  shutil.copytree(trained["model_dir"], model_dir)
  step_only = tf.train.Checkpoint(step=tf.Variable(7))
  prefix = tf.train.CheckpointManager(step_only, os.path.join(model_dir, "best"), 1).save()
  with pytest.raises(ValueError, match="cannot restore") as error:
    restore.restore_model(model_dir)
  assert prefix in str(error.value)


def test_restore_rejects_checkpoint_of_another_architecture(trained, tmp_path):
  model_dir = str(tmp_path / "model")
  shutil.copytree(trained["model_dir"], model_dir)
  config_path = os.path.join(model_dir, model_dir_lib.CONFIG_NAME)
  with open(config_path) as f:
    config = json.load(f)
  config["model"]["width"] = 0.125
  with open(config_path, "w") as f:
    json.dump(config, f)
  with pytest.raises(ValueError, match="cannot restore"):
    restore.restore_model(model_dir)
