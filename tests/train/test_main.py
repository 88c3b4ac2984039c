"""Tests of train/main.py's flags: every numeric flag has a range, a bad value costs nothing."""

import os
import re
import subprocess
import sys

import pytest
from absl import flags

from common import settings
from train import config as config_lib
from train import main
from train import model as model_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parse(*args):
  flag_values = flags.FlagValues()
  main.define_flags(flag_values)
  flag_values(["train.main", "--shards=s", "--model_dir=m", *args])
  return flag_values


def run_main(*args):
  """train.main in a fresh process, as a user runs it."""
  return subprocess.run([sys.executable, "-m", "train.main", *map(str, args)], cwd=REPO,
                        capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("flag, bad, good",
                         [("epochs", "0", "1"), ("max_steps", "-5", "0"), ("batch_size", "0", "1"),
                          ("learning_rate", "-1", "1e-5"), ("learning_rate", "0", "0.5"),
                          ("momentum", "-5", "0"), ("momentum", "1", "0.99"),
                          ("weight_decay", "-0.1", "0"), ("patience", "0", "1"),
                          ("max_lr_drops", "-1", "0"), ("dropout", "1.5", "0"),
                          ("dropout", "-0.2", "0.9"), ("groups", "0", "1"), ("groups", "-2", "4"),
                          ("width", "0", "0.01"), ("log_every", "0", "1"),
                          ("checkpoint_every", "0", "1"), ("eval_every_epochs", "0", "1"),
                          ("seed", "-1", "0"), ("shuffle_buffer", "0", "1"),
                          ("steps_per_loop", "0", "1"), ("lr_step_epochs", "30,20", "20,30"),
                          ("lr_step_epochs", "0,5", "5"), ("lr_step_epochs", "x", "1,2,3"),
                          ("warmup_steps", "-1", "500")])
def test_every_numeric_flag_has_a_range(flag, bad, good):
  with pytest.raises(flags.IllegalFlagValueError, match=f"--{flag} must be"):
    _parse(f"--{flag}={bad}")
  assert _parse(f"--{flag}={good}")[flag].present


def test_every_numeric_setting_is_range_checked():
  numeric = [
      field.name
      for field, spec in settings.fields(config_lib.Config)
      if field.type in (int, float, int | None)
  ]
  assert len(numeric) > 15
  unchecked = [
      field.name
      for field, spec in settings.fields(config_lib.Config)
      if field.name in numeric and spec.low is None and spec.high is None
  ]
  assert unchecked == []


def test_the_model_takes_exactly_the_inits_the_flags_offer():
  assert set(config_lib.BIAS_INITS) == set(model_lib.POSITIVE_BIAS)
  assert set(config_lib.WEIGHT_INITS) == set(model_lib.WEIGHT_STDDEV_OF)


def test_bad_flag_is_one_line_exit_1_and_writes_nothing(dataset_dir, tmp_path):
  model_dir = tmp_path / "model"
  result = run_main(f"--shards={dataset_dir}", f"--model_dir={model_dir}", "--groups=0")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert [line for line in result.stderr.splitlines() if "--groups" in line
         ] == ["FATAL Flags parsing error: flag --groups=0: --groups must be at least 1"]
  assert not model_dir.exists()


def test_model_dir_naming_a_file_is_one_line_and_the_file_is_kept(dataset_dir, tmp_path):
  precious = tmp_path / "precious.txt"
  precious.write_text("important")
  result = run_main(f"--shards={dataset_dir}", f"--model_dir={precious}")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert len([line for line in result.stderr.splitlines() if "precious.txt" in line]) == 1
  assert precious.read_text() == "important"


def test_alexnet_flags_restate_the_defaults():
  """train/alexnet.flags may restate the paper's values, but never disagree with the defaults."""
  flag_values = _parse(f"--flagfile={os.path.join(REPO, 'train', 'alexnet.flags')}")
  stated = {name for name in flag_values if flag_values[name].present} - {"shards", "model_dir"}
  assert {
      "batch_size", "learning_rate", "momentum", "weight_decay", "dropout", "epochs", "groups",
      "width"
  } <= stated
  defaults = config_lib.Config()
  for name in stated:
    value = flag_values[name].value
    if name == "lr_step_epochs":
      value = tuple(int(epoch) for epoch in value)
    assert value == getattr(defaults, name), name


def test_entry_modules_import_together_and_define_flags_only_when_run():
  # pylint: disable=import-outside-toplevel,unused-import
  from train import data_service, evaluate, export, plot, predict  # noqa: F401
  from train.report import __main__ as report
  assert not {"shards", "model_dir", "output", "model", "split", "dispatcher"} & set(flags.FLAGS)
  assert all(
      callable(module.define_flags)
      for module in (main, evaluate, export, plot, predict, report, data_service))


def test_a_short_run_prints_only_our_lines(dataset_dir, tmp_path):
  env = {
      k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ALEXNET_FULL_LOGS")
  }
  result = subprocess.run([
      sys.executable, "-m", "train.main", f"--shards={dataset_dir}",
      f"--model_dir={tmp_path / 'model'}", "--width=0.0625", "--batch_size=4", "--max_steps=1",
      "--shuffle_buffer=4"
  ], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  lines = result.stderr.splitlines()
  assert not [line for line in lines if line[:1] in "EF" and line[1:5].isdigit()]
  assert not [line for line in lines if "0000 00:00:" in line or "Sharding callback" in line]
  assert all(line[:1] in "IW" and line[1:5].isdigit() for line in lines), lines
  assert "Stopped (reached --max_steps=1) at step 1" in result.stderr
  # Each line names the module that logged it, not absl's own file.
  assert re.search(r" progress\.py:\d+\] Stopped", result.stderr), lines
  assert not [line for line in lines if " __init__.py:" in line]


def test_full_logs_are_one_variable_away():
  script = "import os; from common import quiet; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
  quiet_level, full_level = (subprocess.run(
      [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
           **extra}, check=True).stdout.strip() for extra in ({}, {"ALEXNET_FULL_LOGS": "1"}))
  assert (quiet_level, full_level) == ("3", "None")
