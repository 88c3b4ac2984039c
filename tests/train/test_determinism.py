"""--deterministic: two runs, and a run resumed mid-epoch, hold identical checkpoints."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from common import dataset as dataset_lib
from train import config as config_lib
from train.errors import TrainingError
from train.run import train

from tests.train.conftest import TINY_CONFIG

# Dropout stays on (its seeds are checkpointed); 4 steps per epoch, checkpoints at 3, 4, 6, 8.
DETERMINISTIC = dict(TINY_CONFIG, deterministic=True, epochs=2, checkpoint_every=3, log_every=2)
# Counts the saves a run made itself, not the training: it differs between a resumed run and one.
NOT_STATE = ("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH")


@pytest.fixture
def determinism():
  yield
  tf_config.disable_op_determinism()  # Process-wide: the other tests run as they always did.


def _train(dataset_dir, model_dir, **overrides):
  # Keras numbers the objects a process creates (sgd, sgd_1, ...) and the checkpoint's object graph
  # holds those names: each run starts from a clear session, as each command does.
  keras.backend.clear_session()
  train.train_and_evaluate(config_lib.Config(**{**DETERMINISTIC, **overrides}),
                           dataset_lib.load(dataset_dir), model_dir)


def _checkpoint(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {
      name: reader.get_tensor(name)
      for name in reader.get_variable_to_shape_map()
      if not name.startswith(NOT_STATE)
  }


def _files(model_dir, step):
  """{name: bytes} of the files of step's checkpoint in model_dir/ckpt."""
  directory = os.path.join(model_dir, "ckpt")
  files = {}
  for name in sorted(os.listdir(directory)):
    if name.startswith(f"ckpt-{step}."):
      with open(os.path.join(directory, name), "rb") as f:
        files[name] = f.read()
  return files


def _assert_same(first, second):
  assert first.keys() == second.keys()
  for name in first:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_two_runs_hold_identical_checkpoints(dataset_dir, tmp_path, determinism):
  runs = [str(tmp_path / name) for name in ("a", "b")]
  for model_dir in runs:
    _train(dataset_dir, model_dir)
  prefixes = [
      tf.train.get_checkpoint_state(os.path.join(run, "ckpt")).all_model_checkpoint_paths
      for run in runs
  ]
  assert [os.path.basename(p) for p in prefixes[0]] == ["ckpt-4", "ckpt-6", "ckpt-8"]
  for first, second in zip(*prefixes):
    _assert_same(_checkpoint(first), _checkpoint(second))
  for step in (4, 6, 8):
    assert _files(runs[0], step) and _files(runs[0], step) == _files(runs[1], step), step
  state = _checkpoint(prefixes[0][-1])
  assert any(name.startswith("dropout_seeds/") for name in state)  # the masks' seeds are state
  # The network's 16 weights (saved once, under the optimizer), its momenta, the generator's state.
  assert sum(name.startswith("optimizer/_trainable_variables/") for name in state) == 16
  assert sum(name.startswith("optimizer/_variables/") for name in state) == 16
  assert "rng/_state_var/.ATTRIBUTES/VARIABLE_VALUE" in state
  with open(os.path.join(runs[0], "config.json")) as f:
    assert json.load(f)["flags"]["deterministic"] is True


def test_a_resumed_run_continues_as_an_uninterrupted_one(dataset_dir, tmp_path, determinism):
  whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
  _train(dataset_dir, whole)
  _train(dataset_dir, resumed, max_steps=3)  # stopped in the middle of the first epoch
  _train(dataset_dir, resumed, max_steps=6)  # and again in the middle of the second
  _train(dataset_dir, resumed)
  for step in (6, 8):
    _assert_same(_checkpoint(os.path.join(whole, "ckpt", f"ckpt-{step}")),
                 _checkpoint(os.path.join(resumed, "ckpt", f"ckpt-{step}")))
  # Byte for byte: the same saves at the same steps (3, 4, 6, 8), so even the save counter agrees.
  for step in (4, 6, 8):
    assert _files(whole, step) and _files(whole, step) == _files(resumed, step), step


@pytest.mark.parametrize(
    "overrides, message",
    [(dict(seed=None), "--deterministic needs --seed"),
     (dict(data_service="127.0.0.1:1"), "--deterministic cannot use --data_service")])
def test_what_cannot_be_deterministic_is_refused_in_one_line(dataset_dir, tmp_path, overrides,
                                                             message):
  with pytest.raises(TrainingError, match=message) as raised:
    _train(dataset_dir, str(tmp_path / "model"), **overrides)
  assert "\n" not in str(raised.value)
  assert not (tmp_path / "model").exists()


def test_several_trainers_are_refused(dataset_dir, tmp_path, monkeypatch):
  monkeypatch.setenv(
      "TF_CONFIG",
      json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}))
  with pytest.raises(TrainingError, match="--deterministic is for one trainer"):
    _train(dataset_dir, str(tmp_path / "model"))
