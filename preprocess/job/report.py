"""What the launching process reports: progress while the pipeline runs, then the manifest and summary."""

import collections
import heapq
import io
import json
import threading
import time

import numpy as np
from absl import logging

from common import manifest as manifest_lib
from common import records
from common import schema
from common import tfds_metadata
from preprocess import paths
from preprocess.conversion import pipeline as pipeline_lib
from preprocess.conversion import resume
from preprocess.conversion import shard_writer
from preprocess.conversion import stats as stats_lib
from preprocess.paths import join


class ProgressReporter(threading.Thread):
  """Logs shards done of those to convert, images/s and ETA by watching shard results appear.

  Works the same on every runner, since it only looks at the output folder. Only the work still to
  do counts: shards an earlier run finished are left out of the totals and the rate.
  """

  def __init__(self, config, to_convert, before, interval_seconds):
    """`to_convert`: {shard file: files listed for it}; `before`: `resume.survey`'s second value."""
    super().__init__(daemon=True)
    self._config = config
    self._to_convert = to_convert
    self._before = {f: before.get(f) for f in to_convert}
    self._total_images = sum(to_convert.values())
    self._interval = interval_seconds
    self._stopped = threading.Event()
    self._start = time.time()

  def run(self):
    while not self._stopped.wait(self._interval):
      try:
        finished = resume.finished_since(self._config, self._before)
      except OSError as e:  # a store that did not answer this time: the next line will say more
        logging.warning("progress: cannot list the finished shards now (%s)", e)
        continue
      images = sum(self._to_convert[f] for f in finished)
      rate = images / (time.time() - self._start)
      eta = (self._total_images - images) / rate if rate else float("nan")
      logging.info("progress: %d/%d shards, %d/%d images, ~%.0f images/s, ETA %s", len(finished),
                   len(self._to_convert), images, self._total_images, rate, _duration(eta))

  def stop(self):
    self._stopped.set()


def _duration(seconds):
  if seconds != seconds:  # NaN: nothing finished yet.
    return "unknown"
  return time.strftime("%H:%M:%S", time.gmtime(seconds))


class SkipList:
  """Every shard's skipped files, counted from the shard results and read back from the shards' lists.

  Streamed, since the whole list of a mostly skipped ImageNet would be the job's largest object.
  """

  def __init__(self, results):
    self._files = collections.defaultdict(list)
    self.reasons = collections.defaultdict(collections.Counter)  # split -> reason -> count
    for result in results:
      if result["skipped_file"]:
        self._files[result["split"]].append(result["skipped_file"])
      self.reasons[result["split"]].update(result["skipped_reasons"])
    self.count = sum(sum(reasons.values()) for reasons in self.reasons.values())

  def entries(self, split=None):
    """The manifest's skipped entries, in its (split, path) order; those of `split` if given."""
    for name in sorted(self._files):
      if split in (None, name):
        yield from heapq.merge(*map(shard_writer.read_skip_list, self._files[name]),
                               key=lambda entry: entry["path"])


def write_json(path, manifest, skips):
  with paths.create(path) as f:
    manifest_lib.write(manifest, f, skips.entries())


def assemble_manifest(config, names, plans, specs, options, subset=None):
  """Builds the manifest from the pipeline's merged results and checks that the accounting closes.

  Returns:
    (manifest dict with an empty skip list, float32 mean image, the `SkipList` to write into it).

  Raises:
    RuntimeError: if the written and skipped images do not add up to the listed ones (a bug, or
      files that changed during the run).
  """
  results = json.loads(paths.read(join(config.tmp_dir, pipeline_lib.RESULTS_NAME)))
  by_split = collections.defaultdict(list)
  for result in results:
    by_split[result["split"]].append(result)
  splits, repaired = {}, []
  for plan in plans:
    shards = sorted(by_split[plan.name], key=lambda r: r["index"])
    expected = [s.file for s in specs if s.split == plan.name]
    if [r["file"] for r in shards] != expected:
      raise RuntimeError(f"{plan.name}: shards written {[r['file'] for r in shards]} differ from "
                         f"the plan {expected}")
    class_counts = collections.Counter()
    split_repaired = []
    for shard in shards:
      class_counts.update(shard["class_counts"])
      split_repaired.extend(dict(split=plan.name, **r) for r in shard["repaired"])
    _check_accounting(plan, shards)
    repaired.extend(split_repaired)
    splits[plan.name] = manifest_lib.make_split([
        manifest_lib.make_shard(r["file"], r["num_examples"], r["size_bytes"], r["sha256"],
                                records.index_name(r["file"])) for r in shards
    ], class_counts, layout=plan.layout, input_form=plan.source,
                                                skipped=sum(s["num_skipped"] for s in shards),
                                                repaired=len({r["path"] for r in split_repaired}),
                                                ignored=len(plan.ignored), dropped=sum(
                                                    len(s.get("dropped", ())) for s in shards))
  mean_image, stats = _training_stats(config.tmp_dir)
  kept = [r for r in results if r["kept"]]
  manifest = manifest_lib.make_manifest(
      image_size=schema.IMAGE_SIZE, encoding=schema.format_of_encoding(config.encoding),
      synsets=config.synsets, names=names, splits=splits, repaired=repaired,
      ignored_files=[p for plan in plans for p in plan.ignored], stats=stats,
      resume=manifest_lib.make_resume(
          kept_shards=len(kept), kept_images=sum(r["num_examples"] for r in kept),
          num_shards=len(results),
          rebuilt=collections.Counter(r["rebuilt"] for r in results if r["rebuilt"])),
      subset=subset, args=options_as_args(options))
  return manifest, mean_image, SkipList(results)


def _check_accounting(plan, shards):
  """Listed images = written + skipped (+ dropped as duplicates), overall and per class."""
  seen = collections.Counter()
  for path, wnid in _labelled(plan):
    seen[wnid] += 1
  accounted = collections.Counter()
  for shard in shards:
    accounted.update(shard["class_counts"])
    accounted.update(shard["skipped_classes"])
    accounted.update(entry["path"].split("/")[1] for entry in shard.get("dropped", ()))
  if seen != accounted:
    wrong = sorted(w for w in set(seen) | set(accounted) if seen[w] != accounted[w])
    raise RuntimeError(
        f"{plan.name}: accounting does not close for {wrong[:5]}: listed "
        f"{[seen[w] for w in wrong[:5]]}, written+skipped "
        f"{[accounted[w] for w in wrong[:5]]} (did the input change during the run?)")


def _labelled(plan):
  if plan.layout == "flat":
    return zip(plan.candidates, plan.ground_truth)
  return ((p, p.split("/")[1]) for p in plan.candidates)


def _training_stats(tmp_dir):
  """(mean image, stats dict), or (None, {}) when no training image was written."""
  try:
    image_stats = stats_lib.ImageStats.from_bytes(paths.read(join(tmp_dir,
                                                                  pipeline_lib.STATS_NAME)))
  except paths.Missing:  # no training split (ImageNetV2): no shard summed any pixel
    return None, {}
  if image_stats.count == 0:
    return None, {}
  mean_image, stats = image_stats.finalize()
  return mean_image, dict(stats, mean_file=manifest_lib.MEAN_NAME)


def options_as_args(options):
  return {k: v for k, v in vars(options).items() if k != "progress_seconds"}


def write_mean_and_manifest(output_dir, tmp_dir, manifest, mean_image, skips):
  """Writes mean.npy and TFDS's metadata, then manifest.json last (through a temporary name) so it
  marks completion."""
  buffer = io.BytesIO()
  np.save(buffer, mean_image)
  paths.write_file(join(output_dir, manifest_lib.MEAN_NAME), buffer.getvalue(), tmp_dir)
  # TFDS's files, derived from the manifest, so `tfds.builder_from_directory` reads the shards.
  for name, data in tfds_metadata.metadata_files(manifest).items():
    paths.write_file(join(output_dir, name), data, tmp_dir)
  temp_path = join(tmp_dir, manifest_lib.MANIFEST_NAME)
  write_json(temp_path, manifest, skips)
  paths.rename(temp_path, join(output_dir, manifest_lib.MANIFEST_NAME))


def empty_shard_error(manifest, plans, seed, skips):
  """A one-line error if a shard was written empty (every file hashed to it was skipped), else None.

  The planning check counts listed files; only conversion knows which of them are unusable, so the
  guarantee that no shard is empty is checked again on what was written.
  """
  for plan in plans:
    info = manifest["splits"][plan.name]
    empty = [shard["file"] for shard in info["shards"] if shard["num_examples"] == 0]
    if not empty:
      continue
    skipped = {s["path"] for s in skips.entries(plan.name)}
    written = [p for p in plan.candidates if p not in skipped]
    fits = next((n for n in range(len(info["shards"]) - 1, 0, -1)
                 if len({pipeline_lib.shard_key(seed, p) % n for p in written}) == n), None)
    advice = (f"rerun with --num_shards_{plan.name}={fits}"
              if fits else f"no {plan.name} image could be written")
    return (
        f"{plan.name}: {len(empty)} of {len(info['shards'])} shards ({', '.join(empty[:3])}) "
        f"would be empty: {len(written)} images written, {len(skipped)} files skipped; {advice}")
  return None


def log_summary(manifest, skip_reasons, elapsed):
  """One log line per split: written, skipped by reason, repaired files and fixes, ignored; speed."""
  total = 0
  for split, info in manifest["splits"].items():
    reasons = skip_reasons.get(split, collections.Counter())
    fixes = collections.Counter(r["fix"] for r in manifest["repaired"] if r["split"] == split)
    total += info["num_examples"] + info["skipped"]
    # A file can need several fixes (a PNG with alpha), so files and fixes are counted apart.
    logging.info(
        "%s: %d images written to %d shards, %d classes; skipped %d%s; repaired %d files "
        "with %d fixes%s; ignored %d non-image files", split, info["num_examples"],
        len(info["shards"]), len(info["class_counts"]), info["skipped"], _breakdown(reasons),
        info["repaired"], sum(fixes.values()), _breakdown(fixes), info["ignored"])
  resumed = manifest["resume"]
  total -= resumed["kept_images"]
  if resumed["kept_shards"]:
    logging.info("resumed: kept %d of %d shards (%d images), converted the rest",
                 resumed["kept_shards"], resumed["num_shards"], resumed["kept_images"])
  for reason, count in resumed["rebuilt"].items():
    logging.info("%d shard%s rebuilt: %s", count, "s" if count > 1 else "", reason)
  logging.info("done in %.1f s, %.1f images/s converted", elapsed, total / max(elapsed, 1e-9))


def _breakdown(counts):
  # Ties by name: shards report their counts in any order.
  ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
  return " (" + ", ".join(f"{k} {n}" for k, n in ordered) + ")" if counts else ""
