"""The report's heavy passes: every image of a split scored one by one, and fc7 features.

Built only from the blocks `train.evaluate` uses: `restore.restore_model`, `model_dir.read_mean`,
`input_pipeline.make_dataset` (ten-crop evaluation mode), `preparation.Preparation` and
`preparation.prepare_batch`, `scoring.per_crop` and `metrics.top_k_correct`. One ten-crop pass
gives both results: the central crop is the fifth of the ten windows
(`input_pipeline.ten_crop_windows`, unmirrored centre), the ten-crop score the mean of the ten softmax
outputs, as in `scoring.eval_step`.

`make_dataset` yields no file names, and its evaluation interleave mixes shards. So each shard is
streamed alone (`scoring.named_batches`), which keeps the records in file order, and the file
names come from the same records through `common.schema.parse_example`. With ImageNet-ReaL's labels
each image is also scored against them (`real_labels.top_k_correct_any`).

Results are cached in `model_dir/report_cache/`, keyed by the checkpoint, the dataset and the
settings, so a second report only renders. The audit's duplicates are not in the key: the rows
without them come from the cached file names and hits (`sections.final_metrics`), so a rebuilt
audit changes those rows without a new pass.
"""

import collections
import hashlib
import io
import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from common import image as image_lib
from common import schema
from train.evaluation import metrics
from train.evaluation import real_labels
from train.evaluation import scoring
from train.model_dir import directory as model_dir_lib
from train.model_dir import restore
from train import preparation

CACHE_DIR = "report_cache"
TOP_K = 5
CENTRE_CROP = 4  # index of the unmirrored centre window in `ten_crop_windows`
PROGRESS_BATCHES = 50  # a log line every this many batches, for splits of few large shards
FEATURE_LAYER = "relu7"  # fc7's output after its ReLU (dropout is off at inference)


def read_thumbnails(manifest, split, positions, size):
  """Decodes the stored images at `positions` (`[(shard, record)]`) as uint8 `size`x`size` RGB.

  Returns:
    `{(shard, record): uint8 [size, size, 3]}`.
  """
  wanted = {}
  for shard, record in positions:
    wanted.setdefault(shard, set()).add(record)
  thumbnails = {}
  for shard, records in wanted.items():
    path = manifest.shard_paths(split)[shard]
    for record, serialized in enumerate(tf.data.TFRecordDataset(path).take(max(records) + 1)):
      if record in records:
        pixels = image_lib.decode_image(schema.parse_example(serialized), manifest.encoding,
                                        image_size=manifest.image_size)
        thumbnails[(shard, record)] = tf.cast(
            tf.image.resize(pixels, [size, size], antialias=True) + 0.5, tf.uint8).numpy()
  return thumbnails


class Scorer:
  """A restored model with its preparation constants, scoring ten-crop batches from make_dataset."""

  def __init__(self, model_dir, manifest):
    model, self.config, self.checkpoint = restore.restore_model(model_dir)
    if self.config["classes"] != manifest.data["classes"]:
      raise ValueError(f"{model_dir}: trained on a different label map than {manifest.directory}")
    self.conv1_kernel = model.get_layer("conv1").get_weights()[0]  # [11, 11, 3, filters]
    stats = self.config.get("stats", manifest.stats)
    self.prep = preparation.Preparation.from_stats(
        model_dir_lib.read_mean(model_dir, manifest.image_size), stats)
    self.network = keras.Model(model.input, [model.output, model.get_layer(FEATURE_LAYER).output])

    @tf.function(reduce_retracing=True)
    def score(batch):
      images = preparation.prepare_batch(batch, self.prep, training=False)
      logits, features = self.network(images, training=False)
      return scoring.per_crop(tf.nn.softmax(logits), batch), scoring.per_crop(features, batch)

    self.score = score


def _summarise(probabilities, labels, label_sets=None):
  """Per image: cross-entropy loss, top-5 classes and probabilities, pessimistic top-1/5 hits (and
  ReaL's, against `label_sets`: False where an image has no ReaL label)."""
  # A dataset of fewer than five classes lists them all.
  top = tf.math.top_k(probabilities, min(TOP_K, probabilities.shape[-1]))
  label_probability = tf.gather(probabilities, labels, axis=1, batch_dims=1)
  return {
      "loss":
          -np.log(np.maximum(label_probability.numpy(),
                             np.finfo(np.float32).tiny)), "top5_labels":
                                 top.indices.numpy().astype(np.int32), "top5_probs":
                                     top.values.numpy().astype(np.float32), "top1":
                                         metrics.top_k_correct(probabilities, labels,
                                                               1).numpy().astype(bool),
      "top5":
          metrics.top_k_correct(probabilities, labels,
                                TOP_K).numpy(
                                ).astype(bool), **({} if label_sets is None else {
                                                       f"real_top{k}":
                                                           real_labels.top_k_correct_any(
                                                               probabilities, label_sets, k).numpy(
                                                           ) for k in (1, TOP_K)
                                                   })
  }


def score_split(scorer, manifest, split, batch_size, *, ten_crop=True, feature_rows=None,
                limit_per_shard=None, real=None):
  """Scores every image (or the first `limit_per_shard` of each shard) of a split, one by one.

  Args:
    scorer: a `Scorer`.
    manifest: the dataset's `Manifest`.
    split: the split to score.
    batch_size: images per batch.
    ten_crop: score the ten crops too (else only the central crop, e.g. for features alone).
    feature_rows: flat indices (in the returned order) of the images whose fc7 features to keep;
      None keeps every image's.
    limit_per_shard: score only this many records of each shard.
    real: a `real_labels.RealLabels`: score each image against ImageNet-ReaL's labels too.

  Returns:
    A dict of per-image arrays: `label`, `shard`, `record` (position in its shard), `filename`,
    the `_summarise` fields prefixed `central_` (and `ten_crop_`), `features` (float16 fc7 of the
    central crop) and `feature_rows` (which images those rows are); with `real`, `real_labelled`
    (the image has ReaL labels) and `<mode>_real_top1`, `<mode>_real_top5` (pessimistic hits).

  Raises:
    ValueError: classes or file names ReaL does not label, or a shard that changed meanwhile.
  """
  centre = CENTRE_CROP if ten_crop else 0
  columns = collections.defaultdict(list)
  if real is not None:
    real_labels.check_classes(manifest)
  total, paths, seen = 0, manifest.shard_paths(split), set()
  for shard, record, batch_names, batch in scoring.named_batches(manifest, split,
                                                                 batch_size=batch_size,
                                                                 ten_crop=ten_crop,
                                                                 limit_per_shard=limit_per_shard):
    probabilities, features = scorer.score(batch)
    labels = batch["label"]
    n = int(tf.size(labels))
    modes = [("central", probabilities[:, centre])]
    if ten_crop:
      modes.append(("ten_crop", tf.reduce_mean(probabilities, axis=1)))
    sets = None
    if real is not None:
      sets = real.label_sets(real.indices(batch_names, seen), manifest.num_classes)
      columns["real_labelled"].append(sets.any(axis=1))
    for mode, scores in modes:
      for field, values in _summarise(scores, labels, sets).items():
        columns[f"{mode}_{field}"].append(values)
    rows = np.arange(total, total + n)
    if feature_rows is not None:
      rows = rows[np.isin(rows, feature_rows)]
    columns["features"].append(features[:, centre].numpy()[rows - total].astype(np.float16))
    columns["feature_rows"].append(rows)
    columns["label"].append(labels.numpy().astype(np.int32))
    columns["shard"].append(np.full(n, shard, np.int32))
    columns["record"].append(np.arange(record, record + n, dtype=np.int32))
    columns["filename"].append(np.array(batch_names, dtype=str))
    total += n
    if (record + n) % (PROGRESS_BATCHES * batch_size) < n:
      logging.info("Report: %s shard %d/%d, %d images scored", split, shard + 1, len(paths), total)
  logging.info("Report: %s scored, %d images in %d shards", split, total, len(paths))
  return {key: np.concatenate(parts) for key, parts in columns.items()}


def cache_key(scorer, manifest, split, settings):
  """Identifies a pass: the checkpoint's files (name, size, mtime), the split's shards, settings."""
  files = sorted(tf.io.gfile.glob(scorer.checkpoint + ".*"))
  stamps = [(os.path.basename(f), tf.io.gfile.stat(f).length, tf.io.gfile.stat(f).mtime_nsec)
            for f in files]
  shards = manifest.data["splits"][split]["shards"]
  text = json.dumps([scorer.checkpoint, stamps, manifest.directory, shards, settings],
                    sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(model_dir, name, key, compute):
  """`compute()`'s dict of arrays, stored as `model_dir/report_cache/<name>-<key>.npz`."""
  directory = os.path.join(model_dir, CACHE_DIR)
  path = os.path.join(directory, f"{name}-{key}.npz")
  if tf.io.gfile.exists(path):
    logging.info("Report: reusing %s", path)
    with tf.io.gfile.GFile(path, "rb") as f:
      with np.load(io.BytesIO(f.read()), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
  result = compute()
  tf.io.gfile.makedirs(directory)
  for stale in tf.io.gfile.glob(os.path.join(directory, f"{name}-*.npz")):
    tf.io.gfile.remove(stale)  # an older checkpoint's or setting's pass: never read again
  # Written under a temporary name and renamed, so an interrupted report leaves no bad cache.
  buffer = io.BytesIO()  # np.savez seeks, which a gfile opened for writing cannot
  np.savez(buffer, **result)
  with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
    f.write(buffer.getvalue())
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
  return result
