"""The launcher's part of the duplicate audit: the reference an evaluation-only build is compared
with, then `duplicates.json`, the training fingerprints and the manifest's `audit` entry.

The search and the confirmation run in the job (`preprocess/audit/`); what arrives here is the
confirmed pairs (`pipeline.AUDIT_NAME`), a few thousand for ImageNet.
"""

import collections
import hashlib
import json

import apache_beam as beam
import numpy as np

from common import audit as audit_lib
from common import records
from preprocess import paths
from preprocess.audit import groups as groups_lib
from preprocess.audit import search
from preprocess.conversion import pipeline as pipeline_lib
from preprocess.errors import BuildError
from preprocess.inputs import imagenetv2
from preprocess.paths import join


def reference(classes_from):
  """What an ImageNetV2 build is audited against: (the training dataset's fingerprint file, its
  number of rows, its training shards as (split, shard path, index path)).

  Raises:
    BuildError: the training dataset was built without fingerprints.
  """
  training = imagenetv2.read_training_manifest(classes_from)
  audit = training["audit"]
  if not audit or not audit["fingerprints"]:
    raise BuildError(
        f"--classes_from {classes_from}: its training images have no fingerprints (it was built "
        "before the duplicate audit, or with --noaudit_duplicates), so this set cannot be audited "
        "against them; rebuild it with preprocess.build_shards (its shards are kept if unchanged), "
        "or pass --noaudit_duplicates")
  path = join(classes_from.rstrip("/"), audit["fingerprints"])
  with paths.open_ranges(path) as f:
    np.lib.format.read_magic(f)
    rows = np.lib.format.read_array_header_1_0(f)[0][0]
  shards = tuple(("train", join(classes_from.rstrip("/"), s["file"]),
                  join(classes_from.rstrip("/"), records.index_name(s["file"])))
                 for s in training["splits"]["train"]["shards"])
  return path, rows, shards


def drop_training_copies(pipeline_options, config, specs):
  """`--drop_duplicates=train`: rewrites the training shards that hold copies of validation or test
  images without them (a short job of its own); returns how many images it dropped."""
  confirmed = json.loads(paths.read(join(config.tmp_dir, pipeline_lib.AUDIT_NAME)))
  to_drop = groups_lib.to_drop(*groups_lib.document(confirmed))
  if not to_drop:
    return 0
  by_shard = collections.defaultdict(dict)
  for identifier, entry in to_drop.items():
    _, shard, record = search.where(identifier)
    by_shard[specs[shard].file][record] = entry
  results = json.loads(paths.read(join(config.tmp_dir, pipeline_lib.RESULTS_NAME)))
  with beam.Pipeline(options=pipeline_options) as root:
    pipeline_lib.drop_copies(root, config, specs, results, dict(by_shard))
  return len(to_drop)


def finish(output_dir, tmp_dir):
  """Writes `duplicates.json` and the training fingerprints into the dataset.

  Args:
    output_dir: the dataset.
    tmp_dir: where the job left the confirmed pairs, the results and the fingerprints.

  Returns:
    The manifest's `audit` entry; its `dropped` gathers what the shards' results say they left out
    (`--drop_duplicates=train`), this run or a stopped earlier one.
  """
  confirmed = json.loads(paths.read(join(tmp_dir, pipeline_lib.AUDIT_NAME)))
  results = json.loads(paths.read(join(tmp_dir, pipeline_lib.RESULTS_NAME)))
  drop = [entry for result in results for entry in result.get("dropped", [])]
  document, _ = groups_lib.document(confirmed)
  data = audit_lib.dumps(document)
  paths.write_file(join(output_dir, audit_lib.NAME), data, tmp_dir)
  fingerprints, fingerprints_sha256 = None, None
  temp = join(tmp_dir, pipeline_lib.FINGERPRINTS_NAME)
  if paths.exists(temp):
    fingerprints = audit_lib.FINGERPRINTS_NAME
    fingerprints_sha256 = hashlib.sha256(paths.read(temp)).hexdigest()
    paths.rename(temp, join(output_dir, fingerprints))
  return {
      "file": audit_lib.NAME, "sha256": hashlib.sha256(data).hexdigest(),
      "fingerprints": fingerprints, "fingerprints_sha256": fingerprints_sha256,
      "counts": document["counts"], "dropped": sorted(drop, key=lambda d: d["path"])
  }
