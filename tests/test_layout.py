"""The house rules of WORKSPACE.md's layout, read from the code's own imports.

* preprocess and train meet only in common: neither imports the other, and common imports neither;
* inside each stage the rooms form a stack: a module imports only its own room and the rooms
  below it (the commands at the top of a stage import anything of that stage);
* no import circle between files.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("common", "preprocess", "train")
# Each stage's rooms from the ground up. A room is a subpackage, or a set of top-level modules
# named here; every module of the stage must be in one, so a new file is placed on purpose.
ROOMS = {
    "common": [("common", None)],
    "preprocess": [
        ("top", {"errors", "paths", "stores"}),
        ("inputs", None),
        ("audit", None),
        ("conversion", None),
        ("job", None),
        ("commands", {"build_shards"}),
    ],
    "train": [
        ("top", {"config", "model", "input_pipeline", "corrupt_shards", "preparation", "errors"}),
        ("distributed", None),
        ("model_dir", None),
        ("evaluation", None),
        ("run", None),
        ("report", None),
        ("commands", {"main", "evaluate", "export", "predict", "plot", "data_service"}),
    ],
}


def _modules(stage):
  """{dotted module name: path} of one stage's package."""
  found = {}
  for folder, _, names in os.walk(os.path.join(REPO, stage)):
    for name in names:
      if name.endswith(".py"):
        relative = os.path.relpath(os.path.join(folder, name), REPO)[:-3]
        dotted = relative.replace(os.sep, ".")
        found[dotted.removesuffix(".__init__")] = os.path.join(folder, name)
  return found


def _imports(path, known):
  """The project modules a file imports, at any depth of its code."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  targets = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        targets.add(full if full in known else node.module)
  return {target for target in targets if target.split(".")[0] in STAGES}


def _graph():
  known = {}
  for stage in STAGES:
    known.update(_modules(stage))
  return {module: _imports(path, known) for module, path in known.items()}


def _room(module):
  """(stage, index of the module's room in ROOMS[stage]), or None for a package face."""
  stage, *rest = module.split(".")
  rooms = ROOMS[stage]
  if stage == "common" or not rest:
    return stage, 0
  for index, (name, members) in enumerate(rooms):
    if (members is None and rest[0] == name) or (members and len(rest) == 1 and rest[0] in members):
      return stage, index
  pytest.fail(f"{module} is in no room of tests/test_layout.py's ROOMS: place it (and say so in "
              "WORKSPACE.md's layout)")


def test_the_stages_meet_only_in_common():
  for module, targets in _graph().items():
    stage = module.split(".")[0]
    allowed = {"common"} if stage == "common" else {"common", stage}
    strays = sorted(t for t in targets if t.split(".")[0] not in allowed)
    assert not strays, f"{module} imports {strays}: the stages meet only in common"


@pytest.mark.parametrize("stage", [stage for stage in ROOMS if stage != "common"])
def test_each_room_imports_only_its_own_and_the_rooms_below(stage):
  for module, targets in _graph().items():
    if module.split(".")[0] != stage or module == stage:
      continue
    _, own = _room(module)
    for target in targets:
      if target.split(".")[0] != stage or target == stage:
        continue
      _, other = _room(target)
      assert other <= own, (f"{module} ({ROOMS[stage][own][0]}) imports {target} "
                            f"({ROOMS[stage][other][0]}), a room above it")


def test_no_import_circle():
  graph = _graph()
  state = {}

  def visit(module, path):
    state[module] = "open"
    for target in sorted(graph.get(module, ())):
      if target not in graph:
        continue
      if state.get(target) == "open":
        circle = path[path.index(target):] + [target]
        pytest.fail(f"import circle: {' -> '.join(circle)}")
      if target not in state:
        visit(target, path + [target])
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
