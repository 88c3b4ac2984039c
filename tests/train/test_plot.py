"""Tests for train/curves.py on event files written by the trainer's own summary writer."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from train.report import curves as curves_lib
from train.run import summaries

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_STEPS = np.arange(0, 100, 10)
EVAL_STEPS = np.array([50, 100])
# matplotlib's first two default colours: the training and the validation curves.
TRAINING_RGB = (0x1f, 0x77, 0xb4)
VALIDATION_RGB = (0xff, 0x7f, 0x0e)


def _write_scalars(model_dir, kind, steps, scalars):
  """Writes `{tag: values}` at `steps` into model_dir/kind through the trainer's own writer."""
  writers = summaries.SummaryWriters(model_dir, enabled=True)
  for index, step in enumerate(steps):
    writers.scalars(kind, int(step), {tag: float(values[index]) for tag, values in scalars.items()})
  writers.close()


def _training_scalars(steps):
  fraction = steps / 100.0
  return {
      "train/loss": 6.9 - 3 * fraction, "train/top1": 0.1 + 0.5 * fraction,
      "train/top5": 0.3 + 0.5 * fraction, "train/learning_rate": np.where(steps < 50, 0.01, 0.001),
      "perf/images_per_sec": np.full(len(steps), 20.0)
  }


@pytest.fixture
def model_dir(tmp_path):
  _write_scalars(str(tmp_path), "train", TRAIN_STEPS, _training_scalars(TRAIN_STEPS))
  with tf.summary.create_file_writer(str(tmp_path / "train")).as_default():
    # An image summary in the trainer's layout (width, height, PNGs), which is not a curve.
    tf.summary.write("train/augmented_inputs", tf.constant(["8", "8", "png bytes"]), step=0)
  _write_scalars(
      str(tmp_path), "eval", EVAL_STEPS, {
          "eval/loss": np.array([5.0, 4.5]), "eval/top1": np.array([0.2, 0.3]),
          "eval/top5": np.array([0.4, 0.5])
      })
  return str(tmp_path)


def test_read_curves_returns_the_written_scalars(model_dir):
  scalars = curves_lib.read_curves(model_dir)
  written = _training_scalars(TRAIN_STEPS)
  assert set(scalars) == set(written) | {"eval/loss", "eval/top1", "eval/top5"}
  for tag, values in written.items():
    steps, read = scalars[tag]
    np.testing.assert_array_equal(steps, TRAIN_STEPS)
    np.testing.assert_allclose(read, values, rtol=1e-6)
  steps, read = scalars["eval/top1"]
  np.testing.assert_array_equal(steps, EVAL_STEPS)
  np.testing.assert_allclose(read, [0.2, 0.3], rtol=1e-6)


def test_read_scalars_after_resume_keeps_the_values_written_last(tmp_path):
  log_dir = str(tmp_path / "train")
  _write_scalars(str(tmp_path), "train", [0, 10, 20], {"train/loss": [3.0, 2.0, 1.0]})
  # The run died after its step-10 checkpoint; the resumed run writes step 20 again, then 30.
  _write_scalars(str(tmp_path), "train", [20, 30], {"train/loss": [1.5, 1.2]})
  assert len(tf.io.gfile.glob(os.path.join(log_dir, curves_lib.EVENT_PATTERN))) == 2
  steps, values = curves_lib.read_scalars(log_dir)["train/loss"]
  np.testing.assert_array_equal(steps, [0, 10, 20, 30])
  np.testing.assert_allclose(values, [3.0, 2.0, 1.5, 1.2], rtol=1e-6)


def test_read_scalars_keeps_the_events_before_a_truncated_tail(model_dir):
  # The trainer's writer opens both directories, so eval/ also holds the train run's empty file.
  path = max(tf.io.gfile.glob(os.path.join(model_dir, "eval", curves_lib.EVENT_PATTERN)),
             key=os.path.getsize)
  with open(path, "r+b") as f:  # a run killed while writing its last event
    f.truncate(os.path.getsize(path) - 5)
  steps, values = curves_lib.read_scalars(os.path.join(model_dir, "eval"))["eval/top5"]
  np.testing.assert_array_equal(steps, EVAL_STEPS[:-1])
  np.testing.assert_allclose(values, [0.4], rtol=1e-6)


def test_learning_curves_show_errors_and_the_learning_rate(model_dir):
  curves = curves_lib.learning_curves(curves_lib.read_curves(model_dir))
  ((_, steps, values),) = curves["learning rate"]
  np.testing.assert_array_equal(steps, TRAIN_STEPS)
  np.testing.assert_allclose(values, _training_scalars(TRAIN_STEPS)["train/learning_rate"])
  assert [legend for legend, _, _ in curves["top-1 error"]] == ["training", "validation"]
  _, steps, values = curves["top-1 error"][1]
  np.testing.assert_array_equal(steps, EVAL_STEPS)
  np.testing.assert_allclose(values, [0.8, 0.7], rtol=1e-6)  # 1 - the logged accuracy
  _, _, values = curves["cross-entropy loss"][0]
  np.testing.assert_allclose(values, _training_scalars(TRAIN_STEPS)["train/loss"], rtol=1e-6)


def test_plot_curves_writes_a_png_with_both_curves(model_dir, tmp_path):
  output = str(tmp_path / "out" / "curves.png")
  os.makedirs(os.path.dirname(output))
  curves_lib.plot_curves(curves_lib.read_curves(model_dir), output, title="run")

  with open(output, "rb") as f:
    data = f.read()
  assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
  pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).reshape(-1, 3)
  assert (pixels < 200).any(axis=1).mean() > 0.01  # axes, ticks and lines, not a blank canvas
  for colour in (TRAINING_RGB, VALIDATION_RGB):
    assert (np.abs(pixels.astype(int) - colour).sum(axis=1) < 30).sum() > 200


def test_plot_curves_rejects_scalars_without_curves(tmp_path):
  with pytest.raises(ValueError, match="no loss"):
    curves_lib.plot_curves({"perf/images_per_sec": (np.array([1]), np.array([20.0]))},
                           str(tmp_path / "curves.png"))
  assert not (tmp_path / "curves.png").exists()


def _run_plot(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "train.plot", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=120, check=False)


def test_plot_cli_writes_default_output(model_dir):
  result = _run_plot("--model_dir", model_dir)
  assert result.returncode == 0, result.stderr
  assert os.path.getsize(os.path.join(model_dir, curves_lib.DEFAULT_OUTPUT_NAME)) > 20_000


def test_plot_cli_without_events_fails_with_one_line(tmp_path):
  (tmp_path / "train").mkdir()
  result = _run_plot("--model_dir", str(tmp_path))
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert len([line for line in result.stderr.splitlines() if str(tmp_path) in line]) == 1
  assert not (tmp_path / curves_lib.DEFAULT_OUTPUT_NAME).exists()


def test_plot_curves_writes_the_format_the_extension_names(model_dir, tmp_path):
  scalars = curves_lib.read_curves(model_dir)
  curves_lib.plot_curves(scalars, str(tmp_path / "curves.pdf"))
  assert (tmp_path / "curves.pdf").read_bytes()[:5] == b"%PDF-"
  curves_lib.plot_curves(scalars, str(tmp_path / "curves.svg"))
  assert b"<svg" in (tmp_path / "curves.svg").read_bytes()[:1000]
  with pytest.raises(ValueError, match=r"curves\.xyz: matplotlib cannot write \.xyz files"):
    curves_lib.plot_curves(scalars, str(tmp_path / "curves.xyz"))
  assert not (tmp_path / "curves.xyz").exists()


def test_plot_cli_refuses_an_unknown_format_in_one_line(model_dir, tmp_path):
  result = _run_plot("--model_dir", model_dir, "--output", str(tmp_path / "curves.xyz"))
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert len([line for line in result.stderr.splitlines() if "curves.xyz" in line]) == 1
  assert not (tmp_path / "curves.xyz").exists()
