"""Every command's flags, as `--helpfull` shows them, pinned: names, help, defaults, types, choices,
bounds and the module each is listed under.

The flags of `train.main` and `preprocess.build_shards` are generated from their settings'
dataclasses (`common/settings.py`); this file was written from the hand-written flags before that
change, so it holds that a command line that worked then works the same now. A deliberate change of a
flag is a change of its file in tests/help/ (`ALEXNET_WRITE_HELP=1 make test` rewrites them).
"""

import importlib
import os

import pytest
from absl import flags

HELP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "help")
COMMANDS = ("preprocess.build_shards", "train.main", "train.evaluate", "train.export",
            "train.predict", "train.plot", "train.report.__main__", "train.data_service")


def command_help(module_name):
  """The command's section of `--helpfull`: its own flags, defined into a fresh `FlagValues`."""
  flag_values = flags.FlagValues()
  importlib.import_module(module_name).define_flags(flag_values)
  return flag_values.get_help() + "\n"


@pytest.mark.parametrize("module_name", COMMANDS)
def test_every_command_keeps_its_flags(module_name):
  path = os.path.join(HELP_DIR, f"{module_name}.txt")
  text = command_help(module_name)
  if os.environ.get("ALEXNET_WRITE_HELP"):
    with open(path, "w") as f:
      f.write(text)
  with open(path) as f:
    assert text == f.read(), f"the flags of {module_name} changed; see {path}"
