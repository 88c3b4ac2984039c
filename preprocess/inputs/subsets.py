"""Subsets of a release: the classes `--classes` keeps, the training files `--per_class` and
`--train_list` choose.

A subset is planned by the launcher and applied twice with the same rule (`Selection.keeps`): to the
planned files, which size the shards and close the accounting, and by the listing workers, which
list the input again. Every choice depends only on canonical paths (`train/<wnid>/<file>`), which are
the same for every input form, and on `--seed`, never on the runner or the order of a listing:
`--per_class N` keeps the N files of each class with the smallest `sha256(f"{seed}:{file name}")`.
Labels are 0-based over the kept classes in sorted WNID order; validation and test keep the same
classes. Files outside the subset are not part of the dataset: they are neither listed nor counted.
"""

import collections
import dataclasses
import hashlib
import posixpath
import re

from absl import logging

from preprocess import paths
from preprocess.errors import BuildError
from preprocess.inputs import class_lists
from preprocess.inputs import sources

# How many unmatched `--train_list` names the summary spells out; the manifest holds them all.
SUMMARY_NAMES = 50


@dataclasses.dataclass(frozen=True)
class Request:
  """What the subset flags ask for, read and checked before anything is planned or written.

  Attributes:
    name: the named list or the file `--classes` gave, or None.
    wnids: its WNIDs, sorted, or None for every class of the release.
    per_class: `--per_class`, or None.
    train_list: `--train_list`, or None.
    list_names: the file names that list holds, or None.
  """
  name: str = None
  wnids: tuple = None
  per_class: int = None
  train_list: str = None
  list_names: frozenset = None

  @property
  def active(self):
    return bool(self.wnids or self.per_class or self.train_list)


@dataclasses.dataclass(frozen=True)
class Selection:
  """The rule every listing applies: which images of the release are in the subset.

  Attributes:
    classes: the kept WNIDs, or None for every class.
    names: the training file names kept (`--train_list`), or None for every name.
    cutoffs: WNID -> (choice key, file name) of the last training file kept in a class that has more
      than `--per_class` (a class absent here keeps every file).
    seed: `--seed`, which the choice key hashes.
  """
  classes: frozenset = None
  names: frozenset = None
  cutoffs: dict = dataclasses.field(default_factory=dict)
  seed: int = 0

  def keeps_class(self, wnid):
    return self.classes is None or wnid in self.classes

  def keeps(self, split, path, wnid):
    """True if the image at canonical `path`, of class `wnid`, in `split` is in the subset."""
    if not self.keeps_class(wnid):
      return False
    if split != "train":
      return True
    name = posixpath.basename(path)
    if self.names is not None and name not in self.names:
      return False
    cutoff = self.cutoffs.get(wnid)
    return cutoff is None or (choice_key(self.seed, name), name) <= cutoff


def choice_key(seed, name):
  """The 64-bit hash `--per_class` ranks a class's files by: of the file name, not the path."""
  return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


def read_request(classes=None, per_class=None, train_list=None):
  """Reads and checks the subset flags; one line naming the flag and the file for any fault.

  Raises:
    BuildError: an unknown list name, a list file that does not exist or holds a line that is not a
      WNID, `per_class` below 1, a training list that names no file.
  """
  if per_class is not None and per_class < 1:
    raise BuildError(f"--per_class={per_class}: must be at least 1")
  wnids = None
  if classes:
    wnids = class_lists.NAMED.get(classes) or _read_wnids(classes)
  list_names = None
  if train_list:
    lines = _read_list(train_list, "--train_list")
    list_names = frozenset(posixpath.basename(line.split()[0]) for line in lines)
    if not list_names:
      raise BuildError(f"--train_list {train_list}: names no file")
  return Request(classes, wnids, per_class, train_list, list_names)


def _read_list(path, flag):
  if not paths.exists(path):
    raise BuildError(f"{flag} {path}: no such file")
  text = sources.read_text(path).lstrip("\ufeff")  # a list saved by Notepad starts with a BOM
  return [
      line.strip()
      for line in text.splitlines()
      if line.strip() and not line.strip().startswith("#")
  ]


def _read_wnids(value):
  if "/" not in value and "." not in value and not paths.exists(value):
    raise BuildError(f"--classes {value}: not a list this project ships "
                     f"({', '.join(sorted(class_lists.NAMED))}) nor a file of WNIDs")
  wnids = set()
  for number, line in enumerate(_read_list(value, "--classes"), 1):
    wnid = line.split()[0]  # a `<wnid> <words>` line, as synset_words.txt, is read too
    if not re.fullmatch(r"n\d{8}", wnid):
      raise BuildError(f"--classes {value}: line {number} is not a WNID: {line[:60]!r}")
    wnids.add(wnid)
  if not wnids:
    raise BuildError(f"--classes {value}: names no WNID")
  return tuple(sorted(wnids))


def narrow(request, release, plans, seed):
  """Narrows the planned splits to the subset.

  Args:
    request: a `Request`.
    release: the sorted WNIDs of the release's training split.
    plans: the `sources.SplitPlan`s of the whole release, training first.
    seed: `--seed`.

  Returns:
    (the kept WNIDs, the narrowed plans, the `Selection` for the listing workers, the manifest's
    `subset` record: {} when `request` asks for none).

  Raises:
    BuildError: a WNID the release does not hold, or a training list matching no kept file.
  """
  if not request.active:
    return tuple(release), plans, Selection(seed=seed), {}
  missing = sorted(set(request.wnids or ()) - set(release))
  if missing:
    raise BuildError(f"--classes {request.name}: {len(missing)} of its {len(request.wnids)} WNIDs "
                     f"are not classes of the release's training split ({', '.join(missing[:3])}"
                     f"{', ...' if len(missing) > 3 else ''})")
  synsets = request.wnids or tuple(release)
  listed = Selection(frozenset(synsets) if request.wnids else None, request.list_names, seed=seed)
  by_class = collections.defaultdict(list)
  for path in plans[0].candidates:
    if listed.keeps("train", path, path.split("/")[1]):
      by_class[path.split("/")[1]].append(posixpath.basename(path))
  cutoffs, short = {}, {}
  for wnid in synsets if request.per_class else ():
    ranked = sorted((choice_key(seed, name), name) for name in by_class[wnid])
    if len(ranked) > request.per_class:
      cutoffs[wnid] = ranked[request.per_class - 1]
    elif len(ranked) < request.per_class:
      short[wnid] = len(ranked)
  selection = dataclasses.replace(listed, cutoffs=cutoffs)
  narrowed = []
  for plan in plans:
    plan = _narrow_plan(plan, selection)
    if plan.candidates:
      narrowed.append(plan)
    elif plan.name == "train":
      raise BuildError(f"--train_list {request.train_list}: none of its {len(request.list_names)} "
                       "names is a training file of the kept classes")
    else:
      logging.warning("%s: no image of the kept classes; the split is left out", plan.name)
  release_names = {posixpath.basename(path) for path in plans[0].candidates}
  record = {
      "name":
          request.name,
      "wnids":
          list(synsets),
      "per_class":
          request.per_class,
      "train_list":
          request.train_list,
      "short_classes":
          short,
      "unmatched":
          sorted((request.list_names or frozenset()) - release_names),
      "digest":
          _digest(synsets, narrowed[0].candidates if request.per_class or request.train_list else
                  ()),
  }
  logging.info("subset %s: %d of the release's %d classes; %d of its %d training files",
               request.name or "of every class", len(synsets), len(release),
               len(narrowed[0].candidates), len(plans[0].candidates))
  return synsets, narrowed, selection, record


def _digest(synsets, chosen_paths):
  """Hex SHA-256 of the kept WNIDs and the chosen training files' canonical paths, one a line."""
  digest = hashlib.sha256()
  for line in list(synsets) + sorted(chosen_paths):
    digest.update(f"{line}\n".encode())
  return digest.hexdigest()


def _narrow_plan(plan, selection):
  """A split's plan with only the subset's images; a flat split keeps its listing's labels."""
  if plan.layout == "flat":
    kept = [(path, wnid)
            for path, wnid in zip(plan.candidates, plan.ground_truth)
            if selection.keeps(plan.name, path, wnid)]
    return dataclasses.replace(plan, candidates=tuple(path for path, _ in kept),
                               ground_truth=tuple(wnid for _, wnid in kept),
                               listed_ground_truth=plan.listed_ground_truth or plan.ground_truth)
  # A file directly in the split's folder (a README) belongs to no class and stays counted.
  return dataclasses.replace(
      plan, candidates=tuple(p for p in plan.candidates
                             if selection.keeps(plan.name, p,
                                                p.split("/")[1])),
      ignored=tuple(
          p for p in plan.ignored if p.count("/") == 1 or selection.keeps_class(p.split("/")[1])),
      units=tuple(unit for unit in plan.units
                  if unit[2].count("/") != 1 or selection.keeps_class(unit[2].split("/")[1])))


def log_summary(record):
  """The summary's lines on a subset: classes that kept fewer than asked, list names unmatched."""
  if not record:
    return
  short = record["short_classes"]
  if short:
    logging.info("--per_class %d: %d classes have fewer training files and keep them all: %s",
                 record["per_class"], len(short),
                 ", ".join(f"{wnid} ({count})" for wnid, count in sorted(short.items())))
  unmatched = record["unmatched"]
  if unmatched:
    more = len(unmatched) - SUMMARY_NAMES
    logging.warning(
        "--train_list %s: %d names match no training file of the release, so nothing "
        "was kept for them: %s%s", record["train_list"], len(unmatched),
        ", ".join(unmatched[:SUMMARY_NAMES]),
        f" and {more} more (all in manifest.json's subset.unmatched)" if more > 0 else "")
