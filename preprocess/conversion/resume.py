"""Resuming a stopped build: what each finished shard leaves beside it, and whether a rerun keeps it.

A shard's bytes depend only on the images hashed to it and on the options that shape records (the
path hash decides an image's shard and its place in it), so a shard written completely by an earlier
run is exactly what this run would write. To know that without converting again, every shard leaves
in `RESULTS_NAME/`, after the shard itself and in this order: its skip list, its statistics sums (the
training split's exact int64 sums) and last, through a temporary name, `<shard>.json`: its result
(record count, size, SHA-256, class counts, skips and repairs), the SHA-256 of its statistics file,
and a digest of exactly what it was built from. A later run keeps the shard only if that digest is
the one it would build from and the shard's and statistics' SHA-256 still match; anything else is
rebuilt, with the reason counted. Keeping is decided by the worker that would write the shard, so the
re-hashing is spread over the job's workers like the conversion it saves.

The digest covers the shard's input list (canonical path, label and size of every image, in record
order) and every option that shapes its bytes: the `BuildConfig` fields other than its folders, the
shard's split, index and count, the record schema's version and image size, and the versions of
Pillow and its JPEG library, which decode and encode the pixels. Sizes are what the listing knows: a
file's size, or an archive member's stored size, so a deflated zip member differs from the same file
extracted and such a shard is rebuilt (`inputs differ`) when the input's form changes.
"""

import dataclasses
import hashlib
import json

import PIL
from PIL import features as pil_features
from common import manifest as manifest_lib
from common import records
from common import schema
from preprocess import paths
from preprocess.paths import join

RESULTS_NAME = ".build_results"
# Why a shard with a result from an earlier run is converted again.
OPTIONS_DIFFER = "options differ"
INPUTS_DIFFER = "inputs differ"
SHARD_DIFFERS = "shard file differs"
STATS_DIFFER = "statistics file differs"
INDEX_DIFFERS = "index file differs"
FINGERPRINTS_DIFFER = "fingerprints file differs"
UNREADABLE = "result unreadable"
# Fields of `BuildConfig` that say where things are, not what the records hold.
_LOCATIONS = ("input_dir", "output_dir", "tmp_dir", "read_from")


def results_dir(config):
  return join(config.output_dir, RESULTS_NAME)


def result_path(config, spec):
  return join(results_dir(config), f"{spec.file}.json")


def skip_list_path(config, spec):
  return join(results_dir(config), f"{spec.file}.skipped.jsonl")


def stats_path(config, spec):
  return join(results_dir(config), f"{spec.file}.stats.npz")


def fingerprints_path(config, spec):
  return join(results_dir(config), f"{spec.file}.fingerprints.npy")


def options_digest(config, spec):
  """Hex SHA-256 of every option that shapes the bytes of `spec`'s shard (not its inputs)."""
  options = {k: v for k, v in dataclasses.asdict(config).items() if k not in _LOCATIONS}
  options.update(shard=[spec.split, spec.index, spec.num_shards], image_size=schema.IMAGE_SIZE,
                 schema_version=manifest_lib.SCHEMA_VERSION, pillow=PIL.__version__,
                 libjpeg=[pil_features.version("jpg"),
                          pil_features.check("libjpeg_turbo")])
  return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()


def inputs_digest(entries):
  """Hex SHA-256 of a shard's sorted (sort key, path, label, size, ...) entries: path, label, size."""
  digest = hashlib.sha256()
  for _, path, label, size, *_ in entries:
    digest.update(f"{path}\t{label}\t{size}\n".encode())
  return digest.hexdigest()


def file_sha256(path, chunk_size=1 << 22):
  """Hex SHA-256 of a file on any filesystem (`paths`), or None if it cannot be read."""
  digest = hashlib.sha256()
  try:
    with paths.open_sequential(path) as f:
      while chunk := f.read(chunk_size):
        digest.update(chunk)
  except OSError:
    return None
  return digest.hexdigest()


def read_result(config, spec):
  """The result an earlier run left for `spec`'s shard: a dict, None if there is none, or
  `UNREADABLE` if the file is there but not a complete result."""
  try:
    result = json.loads(paths.read(result_path(config, spec)))
  except paths.Missing:
    return None
  except (OSError, ValueError):
    return UNREADABLE
  return result if isinstance(result, dict) and "digest" in result else UNREADABLE


def kept_result(config, spec, digest):
  """(the earlier result to keep, None) or (None, why it cannot be kept; None if there was none).

  Args:
    config: the run's `BuildConfig`.
    spec: the shard's `ShardSpec`.
    digest: {"options": `options_digest`, "inputs": `inputs_digest`} of what this run would build.
  """
  earlier = read_result(config, spec)
  if earlier is None or earlier == UNREADABLE:
    return None, earlier
  if earlier["digest"]["options"] != digest["options"]:
    return None, OPTIONS_DIFFER
  if earlier["digest"]["inputs"] != digest["inputs"]:
    return None, INPUTS_DIFFER
  if file_sha256(join(config.output_dir, spec.file)) != earlier["sha256"]:
    return None, SHARD_DIFFERS
  if earlier["stats_sha256"] and file_sha256(stats_path(config, spec)) != earlier["stats_sha256"]:
    return None, STATS_DIFFER
  if earlier.get("fingerprints_sha256") and file_sha256(fingerprints_path(
      config, spec)) != earlier["fingerprints_sha256"]:
    return None, FINGERPRINTS_DIFFER
  index = join(config.output_dir, records.index_name(spec.file))
  if file_sha256(index) != earlier.get("index_sha256"):
    return None, INDEX_DIFFERS
  if earlier["num_skipped"] and not paths.exists(skip_list_path(config, spec)):
    return None, UNREADABLE
  return earlier, None


def forget(config, spec):
  """Deletes `spec`'s earlier result before its shard is written again, so that a stop while it is
  rewritten leaves no result that describes other bytes."""
  paths.delete([result_path(config, spec)])


def write_result(config, spec, result):
  """Writes the shard's result last, through a temporary name: its presence means the shard, its skip
  list and its statistics are complete."""
  paths.write_file(result_path(config, spec),
                   json.dumps(result, sort_keys=True).encode(), config.tmp_dir)


def survey(config, specs):
  """What the launcher can tell before the run: the shards an earlier run finished with this run's
  options and whose file still has its size (the workers verify their SHA-256 and inputs).

  Returns:
    (dict file -> the earlier result's num_examples for those shards, dict file -> the result file's
    `FileMetadata` or None for every spec: how progress tells a shard finished during this run).
  """
  found = {paths.basename(m.path): m for m in paths.list_files(results_dir(config), "*")}
  shard_sizes = {
      paths.basename(m.path): m.size_in_bytes
      for m in paths.list_files(config.output_dir, "*.tfrecord")
  }
  likely, before = {}, {}
  for spec in specs:
    before[spec.file] = found.get(f"{spec.file}.json")
    if before[spec.file] is None:
      continue
    earlier = read_result(config, spec)
    if (isinstance(earlier, dict) and
        earlier["digest"]["options"] == options_digest(config, spec) and
        shard_sizes.get(spec.file) == earlier["size_bytes"]):
      likely[spec.file] = earlier["num_examples"] + earlier["num_skipped"]
  return likely, before


def finished_since(config, before):
  """Files of shards whose result was written after `survey` saw `before`."""
  now = {paths.basename(m.path): m for m in paths.list_files(results_dir(config), "*")}
  return {
      file for file, then in before.items() if (meta := now.get(f"{file}.json")) is not None and
      (then is None or (meta.last_updated_in_seconds,
                        meta.size_in_bytes) != (then.last_updated_in_seconds, then.size_in_bytes))
  }


def count_finished(config, specs):
  """How many of `specs` have a complete result on disk (shown when a run stops)."""
  names = {paths.basename(m.path) for m in paths.list_files(results_dir(config), "*")}
  return sum(f"{spec.file}.json" in names for spec in specs)
