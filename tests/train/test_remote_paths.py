"""Every stage-2 command on a remote path: TensorFlow's in-memory ram://, standing in for gs://.

TensorFlow's GCS client cannot be pointed at an emulator, but ram:// goes through the same
`tf.io.gfile` layer and fails on any local-only call (open, os.makedirs, np.save to a path ...), so
a command that works here touches its paths only through TensorFlow. It is stricter than gs:// in
three ways the code now allows for: any prefix of a file's name is a directory to it (`ckpt-2` of
`ckpt-2.index`), a file opened for writing is appended to, and renaming a directory renames none of
its files. ram:// is this process's memory: each command runs in-process, its flags parsed into a
`FlagValues` of its own, so absl's global FLAGS stay as other tests expect them.
"""

import contextlib
import io
import logging
import posixpath
import uuid

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tests import datasets
from tests.train.conftest import TINY_CONFIG
from tests.train.conftest import checkpoint_steps
from train import evaluate
from train import export
from train import main as train_main
from train import plot
from train import predict
from train.report import __main__ as report

# The shared trained model's settings. Over ten runs of this file's 2 + 2 steps the most silent
# layer was at most 16.7% silent (conv1), far from the dead-network line of 99%
# (train/run/liveness.py); nothing asserted depends on learning.
TINY = [f"--{name}={value}" for name, value in TINY_CONFIG.items()]
REMOTE_WARNING = "is remote: not locked against a second trainer"


class _Messages(logging.Handler):
  """Keeps the messages of the log records it is given."""

  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def run(module, *args):
  """Runs a command's `main` in this process as its command line would.

  Returns:
    `(stdout, log messages)`.
  """
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  argv = flag_values([module.__name__, *args])
  logger, handler, stdout = logging.getLogger("absl"), _Messages(), io.StringIO()
  level = logger.level
  with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
    patch.setattr(module, "FLAGS", flag_values)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
      module.main(argv)
    except SystemExit as exit_:
      pytest.fail(f"{module.__name__} {' '.join(args)} exited with {exit_.code}: "
                  f"{handler.messages[-3:]}")
    finally:
      logger.removeHandler(handler)
      logger.setLevel(level)
  return stdout.getvalue(), handler.messages


def copy_tree(source, destination):
  """Copies a directory between any two filesystems `tf.io.gfile` knows."""
  for directory, _, files in tf.io.gfile.walk(source):
    target = posixpath.join(destination, _relative(directory, source))
    tf.io.gfile.makedirs(target)
    # Sorted: on ram:// a file whose name is a prefix of another's must be written first (once
    # `X.idx` exists, `X` is a directory there and copying to it fails); a local listing's order is
    # the filesystem's (ext4 lists by name hash: on some machines `X.idx` came first).
    for name in sorted(files):
      tf.io.gfile.copy(posixpath.join(directory, name), posixpath.join(target, name))
  return destination


def files_under(directory):
  """The paths of every file under `directory`, relative to it, sorted."""
  return sorted(
      _relative(posixpath.join(parent, name), directory)
      for parent, _, files in tf.io.gfile.walk(directory)
      for name in files)


def _relative(path, directory):
  """`path` below `directory`, by its text: os.path.relpath would make ram:// paths absolute."""
  return path[len(directory):].lstrip("/")


@pytest.fixture(scope="module")
def remote(dataset_dir):
  """The tiny dataset copied to ram://, trained on for 2 steps into a ram:// model directory, then
  resumed to step 4; the two runs' log messages."""
  root = f"ram://remote-{uuid.uuid4().hex}"
  shards = copy_tree(dataset_dir, f"{root}/shards")
  model_dir = f"{root}/model"
  runs = [
      run(train_main, f"--shards={shards}", f"--model_dir={model_dir}", *TINY,
          f"--max_steps={steps}")[1] for steps in (2, 4)
  ]
  yield {"root": root, "shards": shards, "model_dir": model_dir, "runs": runs}
  # ram://'s rmtree removes everything, then reports a name its own listing made up: a directory
  # lists "assets.extra" beside it as its child ".extra".
  with contextlib.suppress(tf.errors.NotFoundError):
    tf.io.gfile.rmtree(root)
  assert not tf.io.gfile.exists(root)


def test_training_writes_its_model_directory_and_resumes_there(remote):
  model_dir = remote["model_dir"]
  files = files_under(model_dir)
  assert {"config.json", "mean.npy", "best/checkpoint", "ckpt/checkpoint"} <= set(files)
  assert [f for f in files if f.startswith("train/events.out.tfevents.")]
  assert [f for f in files if f.startswith("eval/events.out.tfevents.")]
  assert "trainer.lock" not in files  # remote directories are not locked
  assert not [f for f in files if f.endswith(".tmp")]
  assert checkpoint_steps(f"{model_dir}/ckpt") == [2, 4]
  first, resumed = remote["runs"]
  assert not [m for m in first if m.startswith("Resumed from")]
  assert f"Resumed from {model_dir}/ckpt/ckpt-2 at step 2" in resumed
  for messages in remote["runs"]:
    assert [m for m in messages if REMOTE_WARNING in m] == [f"{model_dir} {REMOTE_WARNING}"]
  with tf.io.gfile.GFile(f"{model_dir}/mean.npy", "rb") as f:
    mean = np.load(io.BytesIO(f.read()))
  assert mean.shape == (256, 256, 3)


def test_evaluate_gives_the_figures_of_a_local_copy(remote, dataset_dir, tmp_path):
  local_dir = copy_tree(remote["model_dir"], str(tmp_path / "model"))
  remote_out, _ = run(evaluate, f"--shards={remote['shards']}",
                      f"--model_dir={remote['model_dir']}", "--batch_size=4")
  local_out, _ = run(evaluate, f"--shards={dataset_dir}", f"--model_dir={local_dir}",
                     "--batch_size=4")
  assert remote_out.startswith("validation: top-1 error ") and " on 9 images " in remote_out
  assert f"{remote['model_dir']}/best/ckpt-" in remote_out
  assert remote_out.replace(remote["model_dir"], local_dir) == local_out


def test_export_then_predict_an_image(remote):
  saved_model = f"{remote['root']}/exported"
  run(export, f"--model_dir={remote['model_dir']}", f"--output={saved_model}")
  assert tf.saved_model.contains_saved_model(saved_model)
  assert "assets.extra/classes.json" in files_under(saved_model)
  assert not tf.io.gfile.glob(f"{saved_model}.*")  # no staging copy left beside it
  with pytest.raises(ValueError, match="holds the model directory"):
    export.export_model(remote["model_dir"], remote["root"], overwrite=True)
  image = f"{remote['root']}/photo.jpg"
  with tf.io.gfile.GFile(image, "wb") as f:
    f.write(datasets.jpeg(datasets.colour_pixels(0, np.random.default_rng(0))))
  out, _ = run(predict, f"--model={saved_model}", image)
  lines = out.splitlines()
  assert lines[0] == image
  # Three classes: the top 5 is all of them, each once.
  assert [line.split()[0] for line in lines[1:]] == ["1.", "2.", "3."]
  assert sorted(line.split()[1] for line in lines[1:]) == [f"n0000000{i}" for i in range(3)]


def test_plot_writes_the_curves_there(remote):
  run(plot, f"--model_dir={remote['model_dir']}")
  with tf.io.gfile.GFile(f"{remote['model_dir']}/curves.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_writes_its_page_and_cache_there(remote):
  output = f"{remote['root']}/pages/report.html"
  out, _ = run(report, f"--model_dir={remote['model_dir']}", f"--output={output}", "--batch_size=9",
               "--neighbour_pool=6", "--num_queries=2", "--num_neighbours=2", "--num_predictions=3",
               "--num_confusions=2")
  assert out == f"{output}\n"
  with tf.io.gfile.GFile(output) as f:
    page = f.read()
  assert page.startswith("<!DOCTYPE html>") and remote["shards"] in page
  assert len([f for f in files_under(remote["model_dir"]) if f.startswith("report_cache/")]) == 2
