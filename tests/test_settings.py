"""Each setting in one place (`common/settings.py`): the flags generated from a dataclass's fields
behave as written there, and WORKSPACE.md's tables of settings are the fields'."""

import dataclasses
import importlib
import os
import re

import pytest
from absl import flags

from common import settings
from common.settings import setting
from train.model_dir import directory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Example:
  path: str = setting(help="Required: no default.")
  rate: float = setting(0.5, "A rate.", low=0, high=1, high_open=True, fixed_on_resume=True)
  count: int = setting(3, "A count.", low=1, bounds_in_help=True)
  mode: str = setting("a", "A mode.", choices=("a", "b"))
  steps: tuple = setting(
      (2, 4), "Steps.", kind=list, to_flag=lambda v: [str(x) for x in v],
      from_flag=lambda v: tuple(int(x) for x in v),
      validators=((lambda v: all(x.isdigit() for x in v), "--{name} must be whole numbers"),))
  shards: dict = setting(None, "{name} shards.", kind=int, per_split=("train", "test"),
                         flag="shards_{split}", low=1, bounds_in_help=True)
  seed: int | None = setting(None, "A seed.", low=0)
  on: bool = setting(True, "A switch.")


def parse(*args):
  flag_values = flags.FlagValues()
  names = settings.define_flags(Example, flag_values)
  flag_values(["prog", *args])
  return flag_values, names


def test_flags_are_generated_from_the_fields_and_parse_back_into_them():
  flag_values, names = parse("--path=p", "--steps=5,7", "--shards_test=2", "--noon", "--mode=b")
  assert names == [
      "path", "rate", "count", "mode", "steps", "shards_train", "shards_test", "seed", "on"
  ]
  assert settings.from_flags(Example, flag_values) == Example(path="p", steps=(5, 7),
                                                              shards={"train": None, "test": 2},
                                                              on=False, mode="b")
  defaults = settings.from_flags(Example, parse("--path=p")[0])
  assert defaults == Example(path="p", shards={"train": None, "test": None})
  assert settings.fixed_on_resume(Example) == ("rate",)


@pytest.mark.parametrize("args, message", [
    (["--rate=1"], "--rate must be in [0, 1)"),
    (["--rate=-0.1"], "--rate must be in [0, 1)"),
    (["--count=0"], "--count=0: 0 is not a positive integer"),
    (["--shards_train=0"], "--shards_train=0: 0 is not a positive integer"),
    (["--seed=-1"], "--seed must be at least 0"),
    (["--mode=c"], "should be one of <a|b>"),
    (["--steps=x"], "--steps must be whole numbers"),
    ([], "--path must have a value"),
])
def test_a_value_out_of_its_range_is_refused_with_its_flag_named(args, message):
  with pytest.raises(flags.Error, match=re.escape(message)):
    parse(*(["--path=p"] if args else []), *args)


def test_the_generated_flags_are_listed_under_the_command_that_defined_them():
  flag_values = flags.FlagValues()
  settings.define_flags(Example, flag_values)
  assert list(flag_values.flags_by_module_dict()) == [__name__]


def test_fixed_on_resume_is_the_configs():
  assert directory.FIXED_ON_RESUME == tuple(
      field.name
      for field, spec in settings.fields(importlib.import_module("train.config").Config)
      if spec.fixed_on_resume)
  assert {"batch_size", "learning_rate", "width", "precision",
          "bias_init"} <= set(directory.FIXED_ON_RESUME)
  assert not {"epochs", "seed", "log_every", "deterministic"} & set(directory.FIXED_ON_RESUME)


@pytest.mark.parametrize("where, fixed_column", [("train.config.Config", True),
                                                 ("preprocess.job.options.BuildOptions", False)])
def test_workspace_tables_are_the_fields(where, fixed_column):
  module, name = where.rsplit(".", 1)
  cls = getattr(importlib.import_module(module), name)
  with open(os.path.join(REPO, "WORKSPACE.md")) as f:
    text = f.read()
  found = re.search(rf"<!-- settings: {re.escape(where)} -->\n(.*?)<!-- end of settings -->", text,
                    re.S)
  assert found, f"WORKSPACE.md has no table of {where}"
  expected = settings.markdown_table(cls, fixed_column=fixed_column)
  assert found.group(1) == expected, f"WORKSPACE.md's table of {where} should be:\n{expected}"
