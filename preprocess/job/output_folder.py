"""The output folder across runs: a complete dataset is refused without --overwrite, a stopped build's
shards wait for the rerun to verify them, and only files of ours are ever removed.

A build from nothing and a rerun after a stop differ only here: the rerun deletes no shard and no
shard result before the job has decided, shard by shard, to keep or rewrite it (`resume`), and the
shards an earlier plan had and this one has not (another shard count) go only after the new
manifest is written. `--overwrite` starts from nothing.
"""

import re

from absl import logging

from common import manifest as manifest_lib
from common import records
from common import tfds_metadata
from preprocess import paths
from preprocess.conversion import resume
from preprocess.errors import BuildError
from preprocess.paths import join

TMP_NAME = ".build_tmp"
INDEX_NAME = ".build_index"  # the archive index: written while planning, before TMP_NAME is cleared
REPORT_NAME = "report.json"
# A shard and its index (common/records.py) go together.
_SHARD_FILE = re.compile(r"^(train|validation|test)-\d{5}-of-\d{5}\.tfrecord(\.idx)?$")
# What every run writes again: the mean, a failed run's report, TFDS's files (common/tfds_metadata).
_REWRITTEN = (manifest_lib.MEAN_NAME, REPORT_NAME) + tfds_metadata.FILE_NAMES


def check(output_dir, overwrite):
  """Refuses a complete dataset without --overwrite; True if there is one to replace."""
  if not paths.exists(join(output_dir, manifest_lib.MANIFEST_NAME)):
    return False
  if not overwrite:
    raise BuildError(refusal_message(output_dir))
  return True


def refusal_message(output_dir):
  """Why a build into `output_dir`, which holds a manifest, needs --overwrite: one line."""
  manifest_path = join(output_dir, manifest_lib.MANIFEST_NAME)
  try:
    manifest_lib.parse(paths.read(manifest_path), manifest_path)
  except (manifest_lib.ManifestError, OSError) as e:
    return (f"--output_dir {output_dir}: its manifest is unreadable ({e}), so the dataset there is "
            "incomplete or damaged; --overwrite deletes that manifest and the shards, mean.npy, "
            "report.json and temporaries of earlier runs (never other files), then rebuilds")
  return (f"--output_dir {output_dir}: already holds a complete dataset "
          f"({manifest_lib.MANIFEST_NAME}); pass --overwrite to replace it")


def prepare(output_dir, overwrite):
  """Makes the folder ready for a run.

  With `overwrite`, the manifest goes first (so that a crash from here on can never leave a
  manifest describing stale shards), then every shard, shard result, `mean.npy`, `report.json`
  and temporary of ours. Without it, only temporaries and the files every run rewrites go: shards
  and their results are the job's to keep or rewrite.
  """
  if check(output_dir, overwrite):
    paths.delete([join(output_dir, manifest_lib.MANIFEST_NAME)])
  ours = [
      path for path, name in _files(output_dir)
      if name in _REWRITTEN or (overwrite and _SHARD_FILE.match(name))
  ]
  ours += [m.path for m in paths.list_files(join(output_dir, TMP_NAME))]
  if overwrite:
    ours += [m.path for m in paths.list_files(join(output_dir, resume.RESULTS_NAME))]
  if ours:
    logging.info("Removing %d files of an earlier run from %s", len(ours), output_dir)
    paths.delete(ours)


def remove_unplanned(output_dir, specs):
  """After the manifest: shards of an earlier plan that this one has not, and every shard result
  (the manifest now holds what they said)."""
  planned = {name for spec in specs for name in (spec.file, records.index_name(spec.file))}
  stale = [
      path for path, name in _files(output_dir) if _SHARD_FILE.match(name) and name not in planned
  ]
  if stale:
    logging.info("Removing %d shards of an earlier run's plan that this build has not", len(stale))
    paths.delete(stale)
  paths.delete_tree(join(output_dir, resume.RESULTS_NAME))


def _files(directory):
  for metadata in paths.list_files(directory, "*"):
    yield metadata.path, paths.basename(metadata.path)
