"""Indexing archives in parallel: a short Beam job of its own, before the main one.

One unit per inner class tar of the training archive (and one per flat tar), so the 1.28M headers of
ILSVRC-2012's training archive are read by the workers, in parallel, and never by the launching
process. Each unit writes its entries to its own file, which planning and the main job's listing
read. This module imports no TensorFlow, so the indexing workers start quickly.

Local archives of at most `LAUNCHER_MAX_BYTES` (a subset of ImageNet, a test, a demo) are indexed by
the launcher itself, through the same `archives.index_unit`: starting the job's workers costs about
a second, while reading those headers here takes a tenth of that.
"""

import threading
import time

import apache_beam as beam
from absl import logging
from apache_beam.metrics import Metrics

from preprocess import paths
from preprocess import stores
from preprocess.inputs import archives
from preprocess.paths import join

# About 9,000 ImageNet images, whose headers the launcher reads in about 0.1 s from a local disk (an
# archive of 1 GiB of empty members would hold 2 million headers, about 25 s).
LAUNCHER_MAX_BYTES = 1 << 30


class IndexArchiveFn(beam.DoFn):
  """Indexes one archive unit (one inner class tar, or a flat split's tar) into its own file."""

  def __init__(self, index_dir, options=None):
    self._index_dir = index_dir
    self._options = options
    self._indexed = Metrics.counter("build_shards", "archives_indexed")

  def setup(self):
    stores.connect(self._options, (self._index_dir,))

  def process(self, numbered_unit):
    number, unit = numbered_unit
    archives.index_unit(unit, index_file(self._index_dir, number))
    self._indexed.inc()


class _IndexProgress(threading.Thread):
  """Logs index units done of total while indexing, which on a network disk takes a while."""

  def __init__(self, index_dir, numbers, interval_seconds):
    super().__init__(daemon=True)
    self._index_dir = index_dir
    # Only this job's files: the folder also holds what the launcher and earlier jobs indexed.
    self._files = {paths.basename(index_file(index_dir, number)) for number in numbers}
    self._interval = interval_seconds
    self._stopped = threading.Event()

  def run(self):
    while not self._stopped.wait(self._interval):
      try:
        names = {paths.basename(m.path) for m in paths.list_files(self._index_dir, "*.json")}
      except OSError as e:  # a store that did not answer this time
        logging.warning("indexing archives: cannot list the finished units now (%s)", e)
        continue
      logging.info("indexing archives: %d/%d units done", len(names & self._files),
                   len(self._files))

  def stop(self):
    self._stopped.set()


def in_launcher(units):
  """Whether units are small and local enough for the launcher to index them itself."""
  return (sum(end - start for _, start, end, _ in units) <= LAUNCHER_MAX_BYTES and
          not any(stores.scheme(path) for path, _, _, _ in units))


def index_file(index_dir, number):
  return join(index_dir, f"{number:06d}.json")


class ArchiveIndexer:
  """Runs the indexing job and hands out index files; also writes the launcher's own (a zip's)."""

  def __init__(self, index_dir, pipeline_options, progress_seconds):
    self._index_dir = index_dir
    self._options = pipeline_options
    self._progress_seconds = progress_seconds
    self._count = 0
    self.remove()

  def index(self, units):
    """Indexes (archive, start, end, canonical folder) units; returns their index files."""
    numbered = list(enumerate(units, self._count))
    self._count += len(units)
    start = time.time()
    if in_launcher(units):
      for number, unit in numbered:
        archives.index_unit(unit, index_file(self._index_dir, number))
      where = "by the launcher"
    else:
      self._run_job(numbered)
      where = "by the workers"
    logging.info("indexed %d archive units of %s in %.1f s (%s)", len(units),
                 units[0][0] if units else "nothing",
                 time.time() - start, where)
    return [index_file(self._index_dir, number) for number, _ in numbered]

  def _run_job(self, numbered):
    progress = _IndexProgress(self._index_dir, [number for number, _ in numbered],
                              self._progress_seconds)
    progress.start()
    try:
      with beam.Pipeline(options=self._options) as root:
        _ = (root | "create_index_units" >> beam.Create(numbered) |
             "index_archives" >> beam.ParDo(IndexArchiveFn(self._index_dir, self._options)))
    finally:
      progress.stop()

  def write(self, entries):
    """Writes entries indexed by the launcher itself (a zip's central directory); returns the file."""
    path = index_file(self._index_dir, self._count)
    self._count += 1
    archives.write_index(path, entries)
    return path

  def remove(self):
    paths.delete_tree(self._index_dir)
