"""`--drop_duplicates=train`: a written training shard rewritten without the copies of validation
and test images that the audit found, its statistics and fingerprints with it.

The records kept are the same bytes in the same order, so the shard is the one a build without
those files would have written (an image's shard and place follow from its own path alone); the
statistics lose exactly the dropped images' pixels (integer sums), decoded from their records.
"""

import collections
import hashlib
import io
import uuid

import numpy as np

from common import reader
from common import records
from common import schema
from preprocess import paths
from preprocess.audit import beam as audit_beam
from preprocess.audit import search
from preprocess.conversion import resume
from preprocess.conversion import stats as stats_lib
from preprocess.paths import join


def drop_records(config, spec, result, dropped):
  """Rewrites a shard without some records; returns its new result (also written, for resume).

  Args:
    config: the run's `shard_writer.BuildConfig`.
    spec: the shard's `ShardSpec`.
    result: the shard's result as the job passed it on (`shard_writer.write_shard`).
    dropped: {record index: the manifest's dropped entry}.
  """
  path = join(config.output_dir, spec.file)
  temp = join(config.tmp_dir, f"{spec.file}.{uuid.uuid4().hex}")
  digest, size, index = hashlib.sha256(), 0, []
  class_counts = collections.Counter(result["class_counts"])
  removed = stats_lib.ImageStats((schema.IMAGE_SIZE, schema.IMAGE_SIZE, schema.CHANNELS))
  with paths.create(temp) as out:
    for number, (_, data) in enumerate(records.iter_records(path, opener=_open)):
      if number not in dropped:
        record = records.frame_record(data)
        index.append(records.index_line(size, len(record)))
        out.write(record)
        digest.update(record)
        size += len(record)
        continue
      example = reader.parse_example(data, f"{path} record {number}")
      class_counts[example["image/class/synset"].decode()] -= 1
      removed.add(reader.decode_image(example, schema.format_of_encoding(config.encoding)))
  paths.rename(temp, path)
  index_bytes = b"".join(index)
  paths.write_file(join(config.output_dir, records.index_name(spec.file)), index_bytes,
                   config.tmp_dir)
  statistics = stats_lib.ImageStats.from_bytes(paths.read(result["stats_file"])).subtract(removed)
  stats_bytes = statistics.to_bytes()
  paths.write_file(result["stats_file"], stats_bytes, config.tmp_dir)
  rows = audit_beam.read_rows(result["fingerprints_file"], None)
  rows = rows[~np.isin(rows["id"], list(dropped))]
  rows["id"] = np.arange(len(rows))
  buffer = io.BytesIO()
  np.save(buffer, rows.astype(search.ROW))
  paths.write_file(result["fingerprints_file"], buffer.getvalue(), config.tmp_dir)
  new = dict(result, num_examples=result["num_examples"] - len(dropped), size_bytes=size,
             sha256=digest.hexdigest(), class_counts={w: n for w, n in class_counts.items() if n},
             stats_sha256=hashlib.sha256(stats_bytes).hexdigest(),
             fingerprints_sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
             index_sha256=hashlib.sha256(index_bytes).hexdigest(),
             dropped=sorted(dropped.values(), key=lambda d: d["path"]))
  resume.write_result(config, spec, {k: v for k, v in new.items() if k not in _JOB_ONLY})
  return new


# What the job adds to a shard's result as it passes it on (`shard_writer._with_paths`).
_JOB_ONLY = ("skipped_file", "stats_file", "fingerprints_file", "kept", "rebuilt")


def _open(path, mode):
  del mode  # binary
  return paths.open_sequential(path)
