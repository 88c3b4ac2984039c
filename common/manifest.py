"""`manifest.json`: how the preprocessing job tells the trainer (and the user) what a dataset holds.

The job writes the manifest last, so its presence means the dataset is complete. Everything a consumer
sizes itself from (classes, example counts, shard files, mean image, colour PCA) comes from here, never
from constants such as 1000 classes or 1,281,167 images. This module is the document: every producer
builds it with `make_manifest`, `make_split` and `make_shard`, `dumps` (and `write`, which streams a
long skip list in) refuses a dict whose keys differ from the key tuples below, and `parse` checks
the same when reading. `common/dataset.py` reads a built dataset directory through it.

Layout (a test holds this block, the key tuples and WORKSPACE.md to each other):

  schema_version, image_size, encoding, label_base,
  classes [{label, synset, name}],
  splits {<split>: {num_examples, class_counts {<wnid>: <count>},
                    shards [{file, num_examples, size_bytes, sha256, index_file}],
                    layout, input, files_seen, skipped, repaired, ignored}},
  skipped [{split, path, reason, detail}], repaired [{split, path, fix}], ignored, ignored_files,
  stats {mean_file, num_images, channel_mean, rgb_covariance, rgb_eigval, rgb_eigvec},
  resume {kept_shards, kept_images, num_shards, rebuilt},
  subset {name, wnids, digest, per_class, train_list, short_classes, unmatched},
  audit {file, sha256, fingerprints, fingerprints_sha256, counts, dropped},
  args

Counts are integers and paths relative to the dataset directory. `encoding` is "JPEG" or "RAW",
`label_base` always 0, `classes` in label order (sorted WNIDs), `layout` "folders" or "flat", `input`
the form the split was read from ("extracted", "kaggle", "tar ILSVRC2012_img_val.tar", ...). A split's
`files_seen` is `num_examples + skipped + ignored`, and its `repaired` counts files with at least one
fix, while the top-level `repaired` lists every fix (`files_seen` also counts the training images
`--drop_duplicates=train` left out, which `audit.dropped` lists). The top-level `ignored` counts `ignored_files`.
`stats` describe the written training images in 0..255 pixel units; eigenvalues are in descending
order and `rgb_eigvec[i][j]` is component i (R, G, B) of eigenvector j; they are empty in a failed
build's report.json, where no training image was written. `resume` says what the run kept of a
stopped earlier one: shards and images kept as they were, of all shards, and in `rebuilt`
({reason: count}) the shards an earlier run had finished that were converted again (zeros and an
empty `rebuilt` for a build from nothing). `subset` is empty for the whole release; for a subset
(`preprocess/inputs/subsets.py`) it holds the list `--classes` named (or None), the kept WNIDs, the
SHA-256 of those WNIDs and of the training files `--per_class` or `--train_list` chose (one a line),
those two options, the classes that had fewer training files than `per_class` ({wnid: count kept})
and the list's names that matched no training file. `audit` is empty when the build did not look for
duplicates (`--noaudit_duplicates`, or a manifest written before the audit); otherwise it names
`duplicates.json` (`common/audit.py`: the groups of copies, their counts) with its SHA-256, the
training split's fingerprints (`fingerprints.npy`, which a later ImageNetV2 build is audited
against; None without a training split) with theirs, a copy of the file's `counts`, and in `dropped`
the training images `--drop_duplicates=train` left out ({split, path, duplicate_of}). `args` holds the resolved options of the run
that wrote the manifest. The manifests of two builds of the same input differ only in `args` and
`resume`.
"""

import json

from common import schema

MANIFEST_NAME = "manifest.json"
MEAN_NAME = "mean.npy"
SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
LAYOUTS = ("folders", "flat")

# The layout, once: the builders below produce exactly these keys and `check_layout` accepts only them.
TOP_KEYS = ("schema_version", "image_size", "encoding", "label_base", "classes", "splits",
            "skipped", "repaired", "ignored", "ignored_files", "stats", "resume", "subset", "audit",
            "args")
CLASS_KEYS = ("label", "synset", "name")
SPLIT_KEYS = ("num_examples", "class_counts", "shards", "layout", "input", "files_seen", "skipped",
              "repaired", "ignored")
SHARD_KEYS = ("file", "num_examples", "size_bytes", "sha256", "index_file")
SKIPPED_KEYS = ("split", "path", "reason", "detail")
REPAIRED_KEYS = ("split", "path", "fix")
STATS_KEYS = ("mean_file", "num_images", "channel_mean", "rgb_covariance", "rgb_eigval",
              "rgb_eigvec")
RESUME_KEYS = ("kept_shards", "kept_images", "num_shards", "rebuilt")
SUBSET_KEYS = ("name", "wnids", "digest", "per_class", "train_list", "short_classes", "unmatched")
AUDIT_KEYS = ("file", "sha256", "fingerprints", "fingerprints_sha256", "counts", "dropped")
DROPPED_KEYS = ("split", "path", "duplicate_of")


class ManifestError(ValueError):
  """The dataset directory does not hold a complete, consistent dataset."""


def make_shard(file, num_examples, size_bytes, sha256, index_file=None):
  """One entry of `splits.<split>.shards`.

  Args:
    file: the shard's file name, relative to the dataset directory.
    num_examples: records in the shard.
    size_bytes: the file's size.
    sha256: hex SHA-256 of the file.
    index_file: its index (`common.records`: DALI's and the `tfrecord` package's format), or None
      where there is none.

  Returns:
    A dict with `SHARD_KEYS`.
  """
  return {
      "file": file, "num_examples": int(num_examples), "size_bytes": int(size_bytes),
      "sha256": sha256, "index_file": index_file
  }


def make_split(shards, class_counts, layout="folders", input_form="extracted", skipped=0,
               repaired=0, ignored=0, dropped=0):
  """One entry of `splits`.

  Args:
    shards: `make_shard` dicts in shard order.
    class_counts: {wnid: records written}.
    layout: how the split was found on disk, one of `LAYOUTS`.
    input_form: what the split was read from: "extracted", or an archive's kind and name.
    skipped: files that could not become an image.
    repaired: files written with at least one fix.
    ignored: files that are clearly not images.
    dropped: images left out as copies of held-out images (`--drop_duplicates=train`), written to
      no shard but seen.

  Returns:
    A dict with `SPLIT_KEYS`.

  Raises:
    ValueError: if the shards and the class counts disagree, or the layout is unknown.
  """
  num_examples = sum(class_counts.values())
  if sum(s["num_examples"] for s in shards) != num_examples:
    raise ValueError(f"shards hold {sum(s['num_examples'] for s in shards)} records, class counts "
                     f"add up to {num_examples}")
  if layout not in LAYOUTS:
    raise ValueError(f"unknown layout {layout!r}, expected one of {LAYOUTS}")
  return {
      "num_examples": num_examples, "class_counts": dict(sorted(class_counts.items())),
      "shards": list(shards), "layout": layout, "input": input_form,
      "files_seen": num_examples + skipped + ignored + dropped, "skipped": skipped,
      "repaired": repaired, "ignored": ignored
  }


def make_resume(kept_shards=0, kept_images=0, num_shards=0, rebuilt=None):
  """The `resume` entry: what a build kept of an earlier, stopped one.

  Args:
    kept_shards: shards an earlier run had finished, verified and kept as they were.
    kept_images: the records in those shards.
    num_shards: all shards of the dataset.
    rebuilt: {reason: count} of shards an earlier run had finished that were converted again.

  Returns:
    A dict with `RESUME_KEYS`.
  """
  return {
      "kept_shards": int(kept_shards), "kept_images": int(kept_images),
      "num_shards": int(num_shards), "rebuilt": dict(sorted((rebuilt or {}).items()))
  }


def make_manifest(*, image_size, encoding, synsets, names, splits, skipped=(), repaired=(),
                  ignored_files=(), stats=None, resume=None, subset=None, audit=None, args=None):
  """The whole manifest.

  Args:
    image_size: side of the stored square images.
    encoding: `schema.FORMAT_JPEG` or `schema.FORMAT_RAW`.
    synsets: the sorted WNIDs; a class's label is its position.
    names: {wnid: human-readable name}.
    splits: {split: `make_split` dict}.
    skipped: dicts with `SKIPPED_KEYS`, one per skipped file.
    repaired: dicts with `REPAIRED_KEYS`, one per fix.
    ignored_files: paths of the ignored files.
    stats: `STATS_KEYS` of the training images, or None when none was written.
    resume: a `make_resume` dict (default: nothing kept).
    subset: a dict with `SUBSET_KEYS` describing a subset of a release, or None for the whole
      release.
    audit: a dict with `AUDIT_KEYS` (the duplicate audit's files and counts), or None when the
      build did not audit.
    args: the run's resolved options.

  Returns:
    A dict with `TOP_KEYS`, lists in a canonical order.

  Raises:
    ValueError: for an unknown encoding or split, or unsorted synsets.
  """
  if encoding not in schema.FORMATS:
    raise ValueError(f"unknown encoding {encoding!r}, expected one of {schema.FORMATS}")
  if set(splits) - set(SPLITS):
    raise ValueError(f"unknown splits {sorted(set(splits) - set(SPLITS))}, expected {SPLITS}")
  if list(synsets) != sorted(synsets):
    raise ValueError("synsets must be sorted: a class's label is its position")
  return {
      "schema_version":
          SCHEMA_VERSION,
      "image_size":
          image_size,
      "encoding":
          encoding,
      "label_base":
          0,
      "classes": [{"label": i, "synset": w, "name": names[w]} for i, w in enumerate(synsets)],
      "splits":
          dict(splits),
      "skipped":
          sorted(skipped, key=lambda s: (s["split"], s["path"])),
      "repaired":
          sorted(repaired, key=lambda r: (r["split"], r["path"], r["fix"])),
      "ignored":
          len(ignored_files),
      "ignored_files":
          sorted(ignored_files),
      "stats":
          dict(stats or {}),
      "resume":
          dict(resume or
               make_resume(num_shards=sum(len(info["shards"]) for info in splits.values()))),
      "subset":
          dict(subset or {}),
      "audit":
          dict(audit or {}),
      "args":
          dict(args or {}),
  }


def check_layout(manifest, where=MANIFEST_NAME):
  """Raises ManifestError naming the first key that is missing or unknown.

  Args:
    manifest: a manifest dict, as built or as read.
    where: the file (or a name for it) to put in the message.
  """
  _check_keys(manifest, TOP_KEYS, where)
  for entry in manifest["classes"]:
    _check_keys(entry, CLASS_KEYS, f"{where}: classes")
  for split, info in manifest["splits"].items():
    _check_keys(info, SPLIT_KEYS, f"{where}: splits.{split}")
    for shard in info["shards"]:
      _check_keys(shard, SHARD_KEYS, f"{where}: splits.{split}.shards")
  for entry in manifest["skipped"]:
    _check_keys(entry, SKIPPED_KEYS, f"{where}: skipped")
  for entry in manifest["repaired"]:
    _check_keys(entry, REPAIRED_KEYS, f"{where}: repaired")
  if manifest["stats"]:
    _check_keys(manifest["stats"], STATS_KEYS, f"{where}: stats")
  _check_keys(manifest["resume"], RESUME_KEYS, f"{where}: resume")
  if manifest["subset"]:
    _check_keys(manifest["subset"], SUBSET_KEYS, f"{where}: subset")
  if manifest["audit"]:
    _check_keys(manifest["audit"], AUDIT_KEYS, f"{where}: audit")
    for entry in manifest["audit"]["dropped"]:
      _check_keys(entry, DROPPED_KEYS, f"{where}: audit.dropped")


def _check_keys(entry, keys, where):
  if not isinstance(entry, dict):
    raise ManifestError(f"{where}: expected an object, found {type(entry).__name__}")
  missing, unknown = sorted(set(keys) - set(entry)), sorted(set(entry) - set(keys))
  if missing or unknown:
    raise ManifestError(f"{where}: " + "; ".join(f"{label} keys {names}" for label, names in (
        ("missing", missing), ("unknown", unknown)) if names))


def dumps(manifest):
  """The canonical text of a manifest: sorted keys, so equal content gives equal bytes.

  Args:
    manifest: a dict from `make_manifest` (possibly edited by a test).

  Returns:
    The JSON text, ending with a newline.

  Raises:
    ManifestError: if its keys are not the layout's.
  """
  check_layout(manifest, "manifest to write")
  return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def write(manifest, out, skipped):
  """Writes `dumps(manifest)` with a skip list streamed in, never holding the whole list or text.

  A build that skips most of ImageNet's 1.28M files has a skip list of hundreds of MB as dicts; this
  writes the same bytes as `dumps` of the manifest holding that list, one entry at a time.

  Args:
    manifest: a dict from `make_manifest` whose `skipped` is empty.
    out: a binary file object.
    skipped: iterable of dicts with `SKIPPED_KEYS` in (split, path) order, as `make_manifest` sorts.

  Returns:
    The number of skipped entries written.

  Raises:
    ManifestError: keys that are not the layout's.
    ValueError: a manifest that already holds skipped entries, or entries out of order.
  """
  if manifest["skipped"]:
    raise ValueError("the manifest already holds a skip list; pass it as `skipped` only")
  # Newlines inside strings are escaped, so this line can only be the top-level key.
  head, tail = dumps(manifest).split('\n "skipped": [],\n')
  out.write(f'{head}\n "skipped": ['.encode())
  count, last = 0, None
  for entry in skipped:
    _check_keys(entry, SKIPPED_KEYS, "manifest to write: skipped")
    order = (entry["split"], entry["path"])
    if last is not None and order <= last:
      raise ValueError(f"skipped entries out of order: {order} after {last}")
    text = json.dumps(entry, indent=1, sort_keys=True).replace("\n", "\n  ")
    out.write(f'{"," if count else ""}\n  {text}'.encode())
    count, last = count + 1, order
  out.write(f'{chr(10) + " " if count else ""}],\n{tail}'.encode())
  return count


def parse(text, path):
  """Parses and checks the text of a manifest.

  Args:
    text: the file's contents (str or bytes).
    path: the file, for messages.

  Returns:
    The manifest dict.

  Raises:
    ManifestError: not JSON, another schema version, or keys that differ from the layout.
  """
  try:
    data = json.loads(text)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ManifestError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(data, dict):
    raise ManifestError(f"{path}: not valid JSON for a manifest (a {type(data).__name__})")
  if data.get("schema_version") != SCHEMA_VERSION:
    raise ManifestError(f"{path}: schema_version {data.get('schema_version')!r}, this code reads "
                        f"{SCHEMA_VERSION}")
  splits = data.get("splits")
  if isinstance(splits, dict):
    for info in splits.values():
      if isinstance(info, dict):  # Written before archives could be read: an extracted folder.
        info.setdefault("input", "extracted")
        for shard in info.get("shards", []):  # Written before shards had an index.
          if isinstance(shard, dict):
            shard.setdefault("index_file", None)
  if isinstance(splits, dict) and "resume" not in data:  # Written before builds could resume.
    data["resume"] = make_resume(num_shards=sum(
        len(info.get("shards", [])) for info in splits.values() if isinstance(info, dict)))
  data.setdefault("subset", {})  # Written before subsets: the whole release.
  data.setdefault("audit", {})  # Written before the duplicate audit: not audited.
  check_layout(data, path)
  return data
