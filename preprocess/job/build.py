"""Orchestration of one build: plan the input, prepare the output folder, run the pipeline, write the
manifest last, and report.

The launching process does only cheap work (listing paths, reading small metadata files, assembling
the manifest); the images are read and written by the pipeline's workers.
"""

import collections
import math
import time

import apache_beam as beam
from absl import logging

from common import audit as audit_lib
from common import records
from preprocess.conversion import pipeline as pipeline_lib
from preprocess.conversion import resume
from preprocess.conversion.shard_writer import BuildConfig
from preprocess.conversion.shard_writer import ShardSpec
from preprocess import paths
from preprocess import stores
from preprocess.errors import BuildError
from preprocess.inputs import devkit
from preprocess.inputs import forms
from preprocess.inputs import imagenetv2
from preprocess.inputs import indexing
from preprocess.inputs import kaggle
from preprocess.inputs import sources
from preprocess.inputs import subsets
from preprocess.job import access
from preprocess.job import duplicates
from preprocess.job import faults
from preprocess.job.options import BuildOptions  # noqa: F401  (the settings run_build takes)
from preprocess.job import output_folder
from preprocess.job import report
from preprocess.paths import join

# Default shard size target, and bytes a record takes (measured on the sample data: a 256x256 JPEG at
# quality 95 of a typical ImageNet photo is 40-60 KB; raw is exactly 196,608 bytes plus ~200 of header).
TARGET_SHARD_BYTES = 150 * 2**20
RECORD_BYTES = {"jpeg": 55_000, "raw": 196_800}
MIN_IMAGES_PER_SHARD = 256
MIN_SHARDS_FOR_PARALLELISM = 8
# ImageNet itself has no unusable file once the gzip-wrapped one is repaired; more than this is worth
# a look even when it is not enough to fail the run.
WARN_SKIP_FRACTION = 0.01


def plan_input(options, indexer=None):
  """Finds and lists the input; returns (sorted synsets, {wnid: name}, [SplitPlan], notes).

  Archives are indexed by `indexer` (an `indexing.ArchiveIndexer`), needed only if there are any.
  """
  if options.classes_from:
    return imagenetv2.plan_input(options, indexer)
  input_dir = options.input_dir.rstrip("/")
  found = forms.find_inputs(input_dir, options.archives, options.devkit_archive, indexer)
  if "train" not in found.sources:
    raise BuildError(f"--input_dir {input_dir}: no train/ folder (expected train/<wnid>/*.JPEG) "
                     "nor a training archive")
  train = forms.plan_source(input_dir, found, "train", None, None, indexer)
  synsets = sorted({p.split("/")[1] for p in train.candidates})
  meta_file = options.devkit_meta or sources.find_meta_file(input_dir)
  if meta_file:
    meta = devkit.read_meta(meta_file)
  elif "meta.mat" in found.devkit:
    meta_file = f"{found.devkit_path}: meta.mat"
    meta = devkit.read_meta(meta_file, found.devkit["meta.mat"])
  else:
    meta = None
  names_file = options.class_names or sources.find_names_file(input_dir)
  if names_file:
    names = sources.read_class_names(names_file)
  elif kaggle.SYNSET_MAPPING in found.kaggle_files:
    names_file = f"{found.zip_path}: {kaggle.SYNSET_MAPPING}"
    names = sources.read_class_names(names_file, found.kaggle_files[kaggle.SYNSET_MAPPING])
  else:
    names = meta.wnid_to_words if meta else {}
  if names:
    unknown = [w for w in synsets if w not in names]
    if unknown:
      raise BuildError(f"{input_dir}/train/{unknown[0]}: WNID {unknown[0]!r} is not in "
                       f"{names_file or meta_file} ({len(unknown)} unknown)")
  plans = [train]
  for split in ("validation", "test"):
    if split in found.sources:
      labeler = _labeler(options, input_dir, found, split, meta)
      plans.append(forms.plan_source(input_dir, found, split, synsets, labeler, indexer))
  return synsets, {w: names.get(w, w) for w in synsets}, plans, found.notes


def _labeler(options, input_dir, found, split, meta):
  """Labels of a flat split: the flag's file, the devkit's (loose or archived), or Kaggle's CSV."""
  id_to_wnid = meta.id_to_wnid if meta else None
  path = options.ground_truth.get(split) or sources.find_ground_truth(input_dir, split)
  if path:
    return sources.ground_truth_labeler(path, id_to_wnid)
  for year in ("2012", "2010"):
    name = f"ILSVRC{year}_{split}_ground_truth.txt"
    if name in found.devkit:
      return sources.ground_truth_labeler(f"{found.devkit_path}: {name}", id_to_wnid,
                                          found.devkit[name].decode("utf-8"))
  if split == "validation":
    solution = join(input_dir, kaggle.SOLUTION)
    if paths.exists(solution):
      return kaggle.solution_labeler(sources.read_text(solution), solution)
    if kaggle.SOLUTION in found.kaggle_files:
      return kaggle.solution_labeler(found.kaggle_files[kaggle.SOLUTION],
                                     f"{found.zip_path}: {kaggle.SOLUTION}")
  return None


def choose_num_shards(plan, options):
  """Shard count for a split: the flag, or ~150 MB shards with enough shards to use every core.

  Returns:
    (count, [files listed for each shard]).
  """
  count = len(plan.candidates)
  requested = options.num_shards.get(plan.name)
  if requested:
    if requested > count:
      raise BuildError(f"--num_shards_{plan.name}={requested}, but {plan.name} has only {count} "
                       "images (a shard may not be empty)")
    num_shards = requested
  else:
    by_size = math.ceil(count * RECORD_BYTES[options.encoding] / TARGET_SHARD_BYTES)
    num_shards = max(1, by_size, min(MIN_SHARDS_FOR_PARALLELISM, count // MIN_IMAGES_PER_SHARD))
  keys = [pipeline_lib.shard_key(options.seed, p) for p in plan.candidates]
  while True:
    listed = collections.Counter(key % num_shards for key in keys)
    if len(listed) == num_shards:
      return num_shards, [listed[index] for index in range(num_shards)]
    if requested:
      raise BuildError(f"--num_shards_{plan.name}={requested} leaves a shard empty for "
                       f"{count} images; use fewer shards")
    num_shards -= 1


def run_build(options, pipeline_options):
  """Runs the whole build.

  Args:
    options: a `BuildOptions`.
    pipeline_options: `beam.options.pipeline_options.PipelineOptions` for the runner.

  Returns:
    The manifest dict that was written, without its skip list (`skipped` is empty: the list is
    streamed from the shards' lists into the file, since it can hold most of ImageNet).

  Raises:
    BuildError, sources.InputError, stores.Unavailable, stores.NoCredentials, paths.PathError:
      one-line user-facing failures.
  """
  start = time.time()
  # Before any file is touched: S3's endpoint and keys reach `FileSystems`, Google's credentials
  # are looked up once, and a filesystem that is not installed is named.
  stores.connect(pipeline_options, [
      path for path in (options.input_dir, options.output_dir, options.classes_from,
                        options.devkit_meta, options.class_names, options.devkit_archive,
                        options.classes, options.train_list, *options.ground_truth.values(),
                        *options.archives.values()) if path
  ])
  output_dir = options.output_dir.rstrip("/")
  # Before indexing, which writes into the output folder.
  request = subsets.read_request(options.classes, options.per_class, options.train_list)
  if options.classes_from and request.active:
    raise BuildError("--classes, --per_class and --train_list choose from a training release; an "
                     "ImageNetV2 build (--classes_from) takes its training dataset's classes")
  access.check_input("input_dir", options.input_dir)
  access.check_output("output_dir", output_dir)
  output_folder.check(output_dir, options.overwrite)
  if options.drop_duplicates and (options.classes_from or not options.audit_duplicates):
    raise BuildError("--drop_duplicates=train needs the audit of a training release (not "
                     "--noaudit_duplicates, nor --classes_from, which builds no training split)")
  reference = (duplicates.reference(options.classes_from)
               if options.classes_from and options.audit_duplicates else None)
  indexer = indexing.ArchiveIndexer(join(output_dir, output_folder.INDEX_NAME), pipeline_options,
                                    options.progress_seconds)
  release, names, plans, notes = plan_input(options, indexer)
  try:
    synsets, plans, selection, subset = subsets.narrow(request, release, plans, options.seed)
  except BuildError:
    indexer.remove()  # a subset the release cannot give leaves nothing behind
    raise
  for split, count in options.num_shards.items():
    if count and split not in {plan.name for plan in plans}:
      raise BuildError(f"--num_shards_{split}={count}, but --input_dir has no {split} split")
  specs, listed = [], {}
  for plan in plans:
    num_shards, counts = choose_num_shards(plan, options)
    for index, count in enumerate(counts):
      specs.append(ShardSpec(plan.name, index, num_shards))
      listed[specs[-1].file] = count
  output_folder.prepare(output_dir, options.overwrite)
  config = BuildConfig(input_dir=options.input_dir.rstrip("/"), output_dir=output_dir, tmp_dir=join(
      output_dir, output_folder.TMP_NAME), synsets=tuple(synsets), encoding=options.encoding,
                       quality=options.quality, jpeg_subsampling=options.jpeg_subsampling,
                       max_pixels=options.max_pixels, seed=options.seed,
                       read_from=tuple(sorted({path for plan in plans for path in plan.read_from})),
                       subset=subset.get("digest", ""), audit=options.audit_duplicates,
                       drop_duplicates=options.drop_duplicates or "")
  for plan in plans:
    classes = (len({p.split("/")[1] for p in plan.candidates}) if plan.layout == "folders" else len(
        set(plan.ground_truth)))
    logging.info("%s (%s): %d images in %d classes (%s layout), %d ignored files, %d shards",
                 plan.name, plan.source, len(plan.candidates), classes, plan.layout,
                 len(plan.ignored), sum(s.split == plan.name for s in specs))
  likely_kept, before = resume.survey(config, specs)
  if likely_kept:
    logging.info(
        "resuming: %d of %d shards (%d images) were finished by an earlier run with these "
        "options; the job verifies each (SHA-256, inputs) and keeps it, and converts the "
        "rest", len(likely_kept), len(specs), sum(likely_kept.values()))
  progress = report.ProgressReporter(config,
                                     {f: n for f, n in listed.items() if f not in likely_kept},
                                     before, options.progress_seconds)
  progress.start()

  def kept_so_far():
    done = resume.count_finished(config, specs)
    return f"{done} of {len(specs)} shards are complete and kept in {output_dir}"

  try:
    with faults.watch(kept_so_far):
      with beam.Pipeline(options=pipeline_options) as root:
        pipeline_lib.build(root, config, plans, specs, selection, reference)
      if options.drop_duplicates:
        duplicates.drop_training_copies(pipeline_options, config, specs)
  finally:
    progress.stop()
  total_images = sum(listed.values())
  manifest, mean_image, skips = report.assemble_manifest(config, names, plans, specs, options,
                                                         subset)
  if options.classes_from:  # evaluation-only: what a model trained on that dataset subtracts
    mean_image, manifest["stats"] = imagenetv2.training_stats(options.classes_from)
  skipped = skips.count
  fraction = skipped / max(1, total_images)
  report_path = join(output_dir, output_folder.REPORT_NAME)
  if fraction > options.max_skip_fraction:
    report.write_json(report_path, manifest, skips)
    raise BuildError(f"{skipped} of {total_images} images ({fraction:.1%}) could not be used, more "
                     f"than --max_skip_fraction={options.max_skip_fraction}; see {report_path} "
                     "(is --input_dir the right folder?)")
  if mean_image is None:
    raise BuildError(f"--input_dir {options.input_dir}: no training image could be written")
  empty_shard = report.empty_shard_error(manifest, plans, options.seed, skips)
  if empty_shard:  # Fail rather than re-plan: an explicit count is the user's, and rare otherwise.
    report.write_json(report_path, manifest, skips)
    paths.delete([
        join(output_dir, name)
        for spec in specs
        for name in (spec.file, records.index_name(spec.file))
    ])
    paths.delete_tree(config.tmp_dir)
    paths.delete_tree(resume.results_dir(config))
    raise BuildError(f"{empty_shard}; no shard was kept, see {report_path}")
  if fraction > WARN_SKIP_FRACTION:
    logging.warning(
        "%d of %d images (%.1f%%) were skipped; the manifest lists each with its reason", skipped,
        total_images, 100 * fraction)
  if options.audit_duplicates:
    manifest["audit"] = duplicates.finish(output_dir, config.tmp_dir)
  report.write_mean_and_manifest(output_dir, config.tmp_dir, manifest, mean_image, skips)
  output_folder.remove_unplanned(output_dir, specs)
  paths.delete_tree(config.tmp_dir)
  indexer.remove()
  report.log_summary(manifest, skips.reasons, time.time() - start)
  if manifest["audit"]:
    logging.info("audit: %s", audit_lib.summary(manifest["audit"]["counts"]))
  subsets.log_summary(subset)
  for note in notes:
    logging.info("%s", note)
  return manifest
