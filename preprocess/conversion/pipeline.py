"""The Beam graph: list files in parallel, group paths by shard, write each shard, merge the results.

Only Beam's core primitives are used (Create, ParDo, GroupByKey with integer keys), so the graph runs
unchanged on the local runner, Dataflow, Flink, Spark and Dask. The expensive part (reading and
converting images) happens after the grouping, inside one DoFn call per shard that streams to its
output file, so only paths, never pixels, are grouped and memory stays flat as the input grows.
"""

import hashlib
import io
import json

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from common import records
from preprocess import paths
from preprocess import stores
from preprocess.audit import beam as audit_beam
from preprocess.conversion import drop
from preprocess.conversion import shard_writer
from preprocess.conversion import stats as stats_lib
from preprocess.inputs import archives
from preprocess.inputs import sources
from preprocess.inputs import subsets
from preprocess.paths import join

RESULTS_NAME = "results.json"
STATS_NAME = "stats.npz"
AUDIT_NAME = "audit.json"  # the audit's confirmed pairs (`preprocess/audit/groups.py` reads them)
FINGERPRINTS_NAME = "fingerprints.npy"  # the training split's, ids whole


def shard_key(seed, relative_path):
  """A 64-bit hash of the path relative to the input directory: decides shard and record order."""
  digest = hashlib.sha256(f"{seed}:{relative_path}".encode()).digest()
  return int.from_bytes(digest[:8], "big")


def listing_units(plans):
  """The listing units of every split: (split, kind, where, canonical folder, flat ground truth)."""
  return [(plan.name, kind, where, canonical, "\n".join(plan.listed_ground_truth or
                                                        plan.ground_truth).encode())
          for plan in plans
          for kind, where, canonical in plan.units]


class ListFilesFn(beam.DoFn):
  """Lists the images of one folder or archive index and keys each by its global shard index.

  Emits (key, canonical path, label, size) for a file at its canonical path under the input, with
  the file's location appended otherwise (an archive member, or Kaggle's tree), its archive or folder
  given by its index in `config.read_from`: a number, not a path repeated 1.28M times in what the
  runner groups and hands to the workers. Ignored files (not images, or nested too deep) are left out
  here; the driver's listing counts them. So are images outside the subset (`subsets.Selection`).
  """

  def __init__(self, config, shard_bases, num_shards, selection=None, options=None):
    self._options = options
    self._config = config
    self._selection = selection or subsets.Selection()
    self._shard_bases = shard_bases
    self._num_shards = num_shards
    self._labels = {synset: label for label, synset in enumerate(config.synsets)}
    self._read_from = {path: number for number, path in enumerate(config.read_from)}
    self._listed = Metrics.counter("build_shards", "images_listed")
    self._outside_subset = Metrics.counter("build_shards", "images_outside_subset")

  def setup(self):
    stores.connect(self._options, (self._config.input_dir, self._config.output_dir))

  def process(self, unit):
    split, kind, where, canonical, ground_truth = unit
    images = (self._list_folder(where, canonical) if kind == "folder" else self._list_index(where))
    if ground_truth:
      wnids = ground_truth.decode().split("\n")
      if len(images) != len(wnids):
        raise ValueError(f"{where}: {len(images)} images now, {len(wnids)} when the job was "
                         "planned; the input changed during the run")
    else:
      wnids = [path.split("/")[1] for path, _, _ in images]
    for (path, size, location), wnid in zip(images, wnids):
      if not self._selection.keeps(split, path, wnid):
        self._outside_subset.inc()
        continue
      label = self._labels[wnid]
      key = shard_key(self._config.seed, path)
      self._listed.inc()
      yield (self._shard_bases[split] + key % self._num_shards[split], (key, path, label, size,
                                                                        *location))

  def _list_folder(self, folder, canonical):
    """(canonical path, size, location) of the images of a folder, sorted."""
    location = () if canonical == folder else (self._read_from[sources.tree_root(
        self._config.input_dir, folder, canonical)], 0, 0, "file")
    return [(f"{canonical}/{p}", size, location)
            for p, size in sources.list_files_with_sizes(join(self._config.input_dir, folder))
            if "/" not in p and not sources.is_ignored(p)]

  def _list_index(self, index_file):
    """(canonical path, size, location) of the images of an archive index, sorted."""
    return sorted((path, size, (self._read_from[source], offset, size,
                                "truncated" if kind == "truncated" else method))
                  for kind, path, (source, offset, size, method) in archives.read_index(index_file)
                  if kind != "ignored")


class WriteShardFn(beam.DoFn):
  """Writes one shard from its grouped entries; emits the shard's result dict."""

  def __init__(self, config, specs, options=None):
    self._options = options
    self._config = config
    self._specs = specs
    self._written = Metrics.counter("build_shards", "images_written")
    self._skipped = Metrics.counter("build_shards", "images_skipped")
    self._repaired = Metrics.counter("build_shards", "images_repaired")
    self._kept = Metrics.counter("build_shards", "shards_kept")

  def setup(self):
    stores.connect(self._options, (self._config.input_dir, self._config.output_dir))

  def process(self, keyed_entries):
    shard, entries = keyed_entries
    result = shard_writer.write_shard(self._config, self._specs[shard], entries)
    if result["kept"]:
      self._kept.inc()
      yield result
      return
    self._written.inc(result["num_examples"])
    self._skipped.inc(result["num_skipped"])
    self._repaired.inc(len({r["path"] for r in result["repaired"]}))
    yield result


class MergeResultsFn(beam.DoFn):
  """Gathers all shard results into one file, sums the training statistics (streaming), and keeps
  the audit's confirmed pairs and the training split's fingerprints."""

  def __init__(self, config, options=None):
    self._options = options
    self._config = config

  def setup(self):
    stores.connect(self._options, (self._config.input_dir, self._config.output_dir))

  def process(self, keyed_elements):
    _, elements = keyed_elements
    results = sorted((e for e in elements if isinstance(e, dict)), key=lambda r:
                     (r["split"], r["index"]))
    confirmed = sorted(e for e in elements if not isinstance(e, dict))
    total, fingerprints = None, []
    for result in results:
      if result["stats_file"]:
        part = stats_lib.ImageStats.from_bytes(paths.read(result["stats_file"]))
        total = part if total is None else total.merge(part)
      if result["split"] == "train" and result.get("fingerprints_file"):
        fingerprints.append(audit_beam.read_rows(result["fingerprints_file"], result["index"]))
    if total is not None:
      paths.write_file(join(self._config.tmp_dir, STATS_NAME), total.to_bytes())
    if fingerprints:
      buffer = io.BytesIO()
      np.save(buffer, np.concatenate(fingerprints))
      paths.write_file(join(self._config.tmp_dir, FINGERPRINTS_NAME), buffer.getvalue())
    if confirmed or not paths.exists(join(self._config.tmp_dir, AUDIT_NAME)):
      paths.write_file(join(self._config.tmp_dir, AUDIT_NAME), json.dumps(confirmed).encode())
    paths.write_file(join(self._config.tmp_dir, RESULTS_NAME), json.dumps(results).encode())
    yield len(results)


class DropFn(beam.DoFn):
  """Rewrites a training shard without the records `--drop_duplicates=train` leaves out; passes
  every other shard's result on as it is."""

  def __init__(self, config, specs, dropped, options=None):
    """`dropped`: {shard file: {record index: the manifest's dropped entry}}."""
    self._config, self._specs, self._dropped, self._options = config, specs, dropped, options

  def setup(self):
    stores.connect(self._options, (self._config.input_dir, self._config.output_dir))

  def process(self, result):
    if result["file"] not in self._dropped:
      yield result
      return
    spec = next(s for s in self._specs if s.file == result["file"])
    yield drop.drop_records(self._config, spec, result, self._dropped[result["file"]])


def drop_copies(root, config, specs, results, dropped):
  """A job of its own, after the audit: the training shards that hold copies rewritten without
  them, then the results and statistics merged again."""
  options = root.options
  return (root | "shard_results" >> beam.Create(results) |
          "drop_duplicates" >> beam.ParDo(DropFn(config, specs, dropped, options)) |
          "key_for_merge" >> beam.Map(lambda element: (0, element)) |
          "gather_results" >> beam.GroupByKey() |
          "merge_results" >> beam.ParDo(MergeResultsFn(config, options)))


def build(root, config, plans, specs, selection, reference=None):
  """Adds the job to a pipeline.

  Args:
    root: the `beam.Pipeline`.
    config: a `shard_writer.BuildConfig`.
    plans: the `sources.SplitPlan`s to write.
    specs: list of `shard_writer.ShardSpec`, indexed by global shard index, split after split.
    selection: the `subsets.Selection` every listing applies.
    reference: for the audit of an evaluation-only build, the training dataset's fingerprints as
      `audit_beam.audit` takes them; else None.
  """
  shard_bases, num_shards = {}, {}
  for index, spec in enumerate(specs):
    shard_bases.setdefault(spec.split, index)
    num_shards[spec.split] = spec.num_shards
  # Every DoFn connects its worker's filesystems with the job's options (`stores.connect`): not
  # every runner hands them to `FileSystems` (the Dask runner does not).
  options = root.options
  results = (
      root | "create_listing_units" >> beam.Create(listing_units(plans)) |
      "list_files" >> beam.ParDo(ListFilesFn(config, shard_bases, num_shards, selection, options)) |
      "group_by_shard" >> beam.GroupByKey() |
      "write_shards" >> beam.ParDo(WriteShardFn(config, specs, options)))
  if config.audit:
    roots = (config.input_dir, config.output_dir)
    shards = tuple((spec.split, join(config.output_dir, spec.file),
                    join(config.output_dir, records.index_name(spec.file))) for spec in specs)
    confirmed = audit_beam.audit(root, results, options, roots, shard_bases, shards, reference)
    # The merge waits for both: the results, and the pairs the audit confirmed (or none).
    results = (results, confirmed) | "results_and_audit" >> beam.Flatten()
  return (results | "key_for_merge" >> beam.Map(lambda element: (0, element)) |
          "gather_results" >> beam.GroupByKey() |
          "merge_results" >> beam.ParDo(MergeResultsFn(config, options)))
