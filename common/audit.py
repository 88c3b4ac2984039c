"""`duplicates.json`: which images of a dataset are copies of one another, as stage 1's audit found.

The writer (`preprocess/audit/`) builds the document with `make_document` and writes `dumps`; the
trainer's evaluation and the report read it with `parse` and ask `in_training`. The manifest lists
the file with its SHA-256 under `audit` (`common/manifest.py`).

Layout:

  method {hash, candidate_bits, confirmation, threshold, digest},
  counts {validation_in_train, validation_in_train_other_class, test_in_train,
          test_in_train_other_class, pairs_within_train, pairs_within_validation, pairs_within_test,
          groups, groups_of_several_classes, images_not_compared},
  groups [[{split, file, class}]]

A group is every image found to be a copy of another member, directly or through a chain, members
sorted by (split, file). `file` is the record's `image/filename`, `class` its WNID. An
evaluation-only build (ImageNetV2 with `--classes_from`, which has no training split) is audited
against the training images of the dataset its manifest's `args.classes_from` names: members of
split "train" are that dataset's. The file holds no path, so a dataset built from the same images
anywhere (a local disk, gs://) has the same bytes. Counts:
`<split>_in_train` the images of that split with a training copy (`_other_class`: one of another
class), `pairs_within_<split>` the pairs of copies inside one split, `groups_of_several_classes`
the groups whose members disagree on the class, `images_not_compared` the images of hash buckets too
large to compare in full (0 unless a bucket held more than the audit's bound; `preprocess/audit/`).
"""

import json

VERSION = 1
NAME = "duplicates.json"
FINGERPRINTS_NAME = "fingerprints.npy"
TOP_KEYS = ("version", "method", "counts", "groups")
MEMBER_KEYS = ("split", "file", "class")
COUNT_KEYS = ("validation_in_train", "validation_in_train_other_class", "test_in_train",
              "test_in_train_other_class", "pairs_within_train", "pairs_within_validation",
              "pairs_within_test", "groups", "groups_of_several_classes", "images_not_compared")
_SPLITS = ("train", "validation", "test")


class AuditError(ValueError):
  """A duplicates file that is not this layout; the message names it."""


def count(groups, images_not_compared=0):
  """The `counts` of a list of groups (each a list of member dicts)."""
  counts = dict.fromkeys(COUNT_KEYS, 0)
  counts["images_not_compared"] = int(images_not_compared)
  for group in groups:
    counts["groups"] += 1
    classes = {member["class"] for member in group}
    counts["groups_of_several_classes"] += len(classes) > 1
    train_classes = {m["class"] for m in group if m["split"] == "train"}
    for split in _SPLITS:
      members = [m for m in group if m["split"] == split]
      counts[f"pairs_within_{split}"] += len(members) * (len(members) - 1) // 2
      if split != "train" and train_classes:
        counts[f"{split}_in_train"] += len(members)
        counts[f"{split}_in_train_other_class"] += sum(
            m["class"] not in train_classes for m in members)
  return counts


def make_document(groups, method, images_not_compared=0):
  """The document: groups in a canonical order, with their counts.

  Args:
    groups: iterables of member dicts with `MEMBER_KEYS`.
    method: what found them (hash, thresholds), for the reader.
    images_not_compared: images of hash buckets too large to compare in full.

  Returns:
    A dict with `TOP_KEYS`.
  """
  ordered = sorted(
      (sorted((dict(m) for m in group), key=lambda m: (m["split"], m["file"])) for group in groups),
      key=lambda g: (g[0]["split"], g[0]["file"]))
  for group in ordered:
    for member in group:
      _check_keys(member, MEMBER_KEYS, "a group member")
  return {
      "version": VERSION, "method": dict(method), "counts": count(ordered, images_not_compared),
      "groups": ordered
  }


def dumps(document):
  """The canonical bytes of a document (sorted keys): equal audits give equal files."""
  _check_keys(document, TOP_KEYS, "duplicates to write")
  return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def parse(text, path):
  """The document in `text` (a file's bytes or str); raises `AuditError` naming `path`."""
  try:
    document = json.loads(text)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise AuditError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(document, dict) or document.get("version") != VERSION:
    raise AuditError(f"{path}: not a version {VERSION} duplicates file")
  _check_keys(document, TOP_KEYS, path)
  _check_keys(document["counts"], COUNT_KEYS, f"{path}: counts")
  for group in document["groups"]:
    for member in group:
      _check_keys(member, MEMBER_KEYS, f"{path}: groups")
  return document


def in_training(document, split):
  """The files of `split` that a group shares with a training image: what a clean score leaves out."""
  found = set()
  for group in document["groups"]:
    if split != "train" and any(m["split"] == "train" for m in group):
      found.update(m["file"] for m in group if m["split"] == split)
  return frozenset(found)


def summary(counts):
  """One line for stage 1's summary, e.g. `797 validation images duplicate training images (12 of
  another class); 29 pairs within validation`."""
  parts = []
  for split in ("validation", "test"):
    if counts[f"{split}_in_train"]:
      parts.append(f"{counts[f'{split}_in_train']} {split} images duplicate training images "
                   f"({counts[f'{split}_in_train_other_class']} of another class)")
  for split in _SPLITS:
    if counts[f"pairs_within_{split}"]:
      parts.append(f"{counts[f'pairs_within_{split}']} pairs within {split}")
  if counts["groups_of_several_classes"]:
    parts.append(f"{counts['groups_of_several_classes']} groups disagree on the class")
  if counts["images_not_compared"]:
    parts.append(f"{counts['images_not_compared']} images in oversized hash buckets not compared "
                 "in full")
  return "; ".join(parts) or "no duplicates found"


def _check_keys(entry, keys, where):
  if not isinstance(entry, dict) or set(entry) != set(keys):
    found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
    raise AuditError(f"{where}: expected the keys {list(keys)}, found {found}")
