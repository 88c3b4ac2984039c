"""A stage's settings as one dataclass whose fields carry their flags: the one home of each setting.

A field made with `setting(...)` holds its default and, in its metadata, everything its absl flag
needs: the help text, the choices, the range and how it is enforced, extra validators, whether a
resumed run must keep it, and how the flag's value becomes the field's. `define_flags` generates
the flags of a dataclass, `from_flags` builds the dataclass from the parsed flags, and
`markdown_table` writes the table WORKSPACE.md shows (a test keeps the two equal). The trainer's
`Config` (train/config.py) and stage 1's `BuildOptions` (preprocess/job/build.py) are made this way;
each command still defines only its own flags.

A field whose value is one entry per split (`per_split`) becomes one flag per split, named by a
template (`num_shards_{split}`), and the field's value is `{split: value}`.

The flags generated here are listed under the command that asked for them, as if it had defined
them itself (absl attributes a flag to the first module on the stack that has not disclaimed it).
"""

import dataclasses
import types

from absl import flags

flags.disclaim_key_flags()

_KEY = "setting"
_NAMES = {"train": "Training", "validation": "Validation", "test": "Test"}


@dataclasses.dataclass(frozen=True)
class Setting:
  """What a field's flag needs (see `setting`)."""
  help: str
  kind: type = None
  choices: tuple = None
  low: float = None
  high: float = None
  low_open: bool = False
  high_open: bool = False
  bounds_in_help: bool = False
  validators: tuple = ()
  fixed_on_resume: bool = False
  per_split: tuple = None
  flag: str = None
  to_flag: object = None
  from_flag: object = None


def setting(default=dataclasses.MISSING, help="", **details):  # pylint: disable=redefined-builtin
  """A dataclass field with its flag's details (`Setting`'s fields).

  Args:
    default: the default; a field without one is a required flag. With `per_split`, the default of
      every split's flag (the field's own default is an empty dict).
    help: the flag's help; with `per_split`, a dict of help per split, or one text where `{split}`
      stands for the split and `{name}` for its name (Training, Validation, Test).
    **details: `kind` (the flag's type where the annotation does not say: `list`), `choices` (an
      enum flag), `low`/`high` with `low_open`/`high_open` (the range; checked by a validator whose
      message names it, or with `bounds_in_help` by absl's own bounds, which the help shows),
      `validators` ((function, message) pairs), `fixed_on_resume`, `per_split` (the splits),
      `flag` (the flag's name, or per split its template with `{split}`), `to_flag` and
      `from_flag` (the default's form on the command line, and the parsed value's in the field).
  """
  meta = {_KEY: Setting(help=help, **details)}
  if details.get("per_split"):
    meta["per_split_default"] = default
    return dataclasses.field(default_factory=dict, metadata=meta)
  return dataclasses.field(default=default, metadata=meta)


def fields(cls):
  """`(field, Setting)` of every field of `cls` that carries a flag, in definition order."""
  return [(f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def fixed_on_resume(cls):
  """The names of the settings a resumed run must keep."""
  return tuple(f.name for f, s in fields(cls) if s.fixed_on_resume)


def _kind(field, spec):
  if spec.kind is not None:
    return spec.kind
  kind = field.type
  if isinstance(kind, types.UnionType):  # `int | None`: the flag is an int that may be unset
    kind = next(k for k in kind.__args__ if k is not type(None))
  return kind


def _flags_of(field, spec):
  """`(flag name, split or None, default, help)` of each flag a field makes."""
  if not spec.per_split:
    default = None if field.default is dataclasses.MISSING else field.default
    return [(spec.flag or field.name, None, default, spec.help)]
  default = field.metadata["per_split_default"]
  default = None if default is dataclasses.MISSING else default
  return [(spec.flag.format(split=split), split, default, spec.help[split] if isinstance(
      spec.help, dict) else spec.help.format(name=_NAMES[split], split=split))
          for split in spec.per_split]


def define_flags(cls, flag_values):
  """Defines the flags of every setting of `cls` in `flag_values`, with their validators.

  Returns:
    The names of the flags defined.
  """
  into = {"flag_values": flag_values}
  names = []
  for field, spec in fields(cls):
    kind = _kind(field, spec)
    for name, _, default, text in _flags_of(field, spec):
      if spec.to_flag is not None and default is not None:
        default = spec.to_flag(default)
      bounds = {}
      if spec.bounds_in_help:
        bounds = {"lower_bound": spec.low, "upper_bound": spec.high}
      if spec.choices is not None:
        flags.DEFINE_enum(name, default, list(spec.choices), text, **into)
      elif kind is bool:
        flags.DEFINE_bool(name, default, text, **into)
      elif kind is int:
        flags.DEFINE_integer(name, default, text, **bounds, **into)
      elif kind is float:
        flags.DEFINE_float(name, default, text, **bounds, **into)
      elif kind is list:
        flags.DEFINE_list(name, default, text, **into)
      else:
        flags.DEFINE_string(name, default, text, **into)
      if not spec.bounds_in_help and (spec.low is not None or spec.high is not None):
        flags.register_validator(name, lambda value, spec=spec: _in_range(value, spec),
                                 f"--{name} must be {range_text(spec)}", **into)
      for check, message in spec.validators:
        flags.register_validator(name, check, message.format(name=name), **into)
      if field.default is dataclasses.MISSING and not spec.per_split:
        flags.mark_flag_as_required(name, **into)
      names.append(name)
  return names


def from_flags(cls, flag_values, **values):
  """`cls` from the parsed flags of its settings, and `values` for fields that have no flag."""
  for field, spec in fields(cls):
    made = _flags_of(field, spec)
    if spec.per_split:
      value = {split: flag_values[name].value for name, split, _, _ in made}
    else:
      value = flag_values[made[0][0]].value
    values[field.name] = value if spec.from_flag is None else spec.from_flag(value)
  return cls(**values)


def range_text(spec):
  """"at least 1", "above 0", "in [0, 1)"."""
  if spec.high is None:
    return f"{'above' if spec.low_open else 'at least'} {spec.low}"
  return (f"in {'(' if spec.low_open else '['}{spec.low}, {spec.high}"
          f"{')' if spec.high_open else ']'}")


def _in_range(value, spec):
  if value is None:  # an unset optional flag, such as --seed
    return True
  above = spec.low is None or (value > spec.low if spec.low_open else value >= spec.low)
  below = spec.high is None or (value < spec.high if spec.high_open else value <= spec.high)
  return above and below


def markdown_table(cls, fixed_column=False):
  """The settings of `cls` as WORKSPACE.md's table: flag, default, allowed values[, fixed on
  resume], and the help, generated so that it cannot drift from the flags."""
  header = ["flag", "default", "values"] + (["fixed on resume"] if fixed_column else []) + ["what"]
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  for field, spec in fields(cls):
    kind = _kind(field, spec)
    for name, _, default, text in _flags_of(field, spec):
      if spec.to_flag is not None and default is not None:
        default = ",".join(spec.to_flag(default)) if kind is list else spec.to_flag(default)
      if kind is bool:
        flag, shown = f"`--[no]{name}`", "true" if default else "false"
      else:
        flag, shown = f"`--{name}`", "-" if default is None else f"`{default}`"
      if field.default is dataclasses.MISSING and not spec.per_split:
        shown = "required"
      if spec.choices is not None:
        allowed = ", ".join(f"`{choice}`" for choice in spec.choices)
      elif spec.low is not None or spec.high is not None:
        allowed = range_text(spec)
      elif spec.validators:
        allowed = spec.validators[0][1].split(" must be ", 1)[-1]
      else:
        allowed = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "text")
      row = [flag, shown, allowed] + (["yes" if spec.fixed_on_resume else ""]
                                      if fixed_column else []) + [text.replace("|", "\\|")]
      lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines) + "\n"
