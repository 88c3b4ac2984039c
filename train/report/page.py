"""Assembling `train.report`'s page: the cached passes, each section's data, images, the template.

Everything the page shows is inline (data URIs, inline CSS, no script), so the one HTML file opens
offline and from a file:// URL.
"""

import base64
import io
import math
import os

import jinja2
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from common import imagenetv2
from train.model_dir import checkpoints as checkpoints_lib
from train.report import curves as curves_lib
from train.report import passes
from train.report import sections
from train.run import chance
from train.run import liveness

TEMPLATE = "report.html.j2"
THUMBNAIL_SIZE = 80  # pixels; at JPEG quality 85 about 3 KB each
# Classes shown before the rest of the per-class table folds away (1,000 rows stay readable).
VISIBLE_CLASSES = 20
EXAMPLES_PER_CONFUSION = 4
# Part of every cache key: raise it when the cached arrays change, so old caches are not read.
CACHE_VERSION = 1


def png_uri(pixels):
  """A data URI of uint8 `[h, w, 3]` pixels as PNG (lossless: for kernels)."""
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
  return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def jpeg_uri(pixels, quality=85):
  """A data URI of uint8 `[h, w, 3]` pixels as JPEG (small: for photographs)."""
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
  return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def training_progress(manifest, config, model_dir):
  """The steps and epochs trained, read from the latest checkpoint (the logged scalars miss the
  steps between log lines), and whether the run ended dead (train/run/liveness.py) or, alive, at
  chance (train/run/chance.py)."""
  state = checkpoints_lib.read_run_state(model_dir) or {}
  steps, since = state.get("step"), state.get("chance_since")
  batch_size = config.get("flags", {}).get("batch_size")
  steps_per_epoch = (manifest.num_examples("train") //
                     batch_size if batch_size and manifest.has_split("train") else 0)
  at_chance, dead = None, None
  if state.get("dead_at") is not None:
    dead = {"at": state["dead_at"], "advice": liveness.ADVICE}
  elif since is not None:
    at_chance = {
        "since": since, "steps": steps - since, "classes": manifest.num_classes,
        "advice": chance.ADVICE
    }
  return {
      "steps": steps, "at_chance": at_chance, "dead": dead,
      "epochs": steps / steps_per_epoch if steps is not None and steps_per_epoch else None
  }


def run_summary(manifest, config, scalars, model_dir, checkpoint):
  """Section 1: dataset, configuration, steps and epochs, wall time and images/s."""
  flags = config.get("flags", {})
  speed = scalars.get("perf/images_per_sec")
  return {
      **training_progress(manifest, config, model_dir),
      "dataset":
          sections.dataset_summary(manifest.data),
      "dataset_dir":
          manifest.directory,
      "encoding":
          manifest.encoding,
      "model":
          config["model"],
      "flags":
          sorted(flags.items()),
      "checkpoint":
          checkpoint,
      "wall_time":
          curves_lib.wall_time_span(os.path.join(model_dir, "train")),
      "images_per_sec":
          float(np.median(speed[1])) if speed is not None else None,
  }


def _positions(scores, rows):
  """`(shard, record)` of the given images, as `passes.read_thumbnails` takes them."""
  return [(int(scores["shard"][i]), int(scores["record"][i])) for i in rows]


def _prediction(scores, index, class_names, thumbnails, key="central"):
  """One image's thumbnail, file name, true class and top-5 classes with probabilities."""
  label = int(scores["label"][index])
  top = [{"name": class_names[c], "probability": float(p), "correct": int(c) == label}
         for c, p in zip(scores[f"{key}_top5_labels"][index], scores[f"{key}_top5_probs"][index])]
  return {
      "image": thumbnails[(int(scores["shard"][index]), int(scores["record"][index]))],
      "filename": str(scores["filename"][index]), "label": class_names[label], "top": top,
      "top1": bool(scores[f"{key}_top1"][index]), "top5": bool(scores[f"{key}_top5"][index])
  }


def build_context(manifest, model_dir, split, *, batch_size, neighbour_pool, num_queries,
                  num_neighbours, num_predictions, num_confusions, real=None):
  """Runs (or reuses) the heavy passes and returns the template's variables.

  `real`, a `real_labels.RealLabels`, adds ImageNet-ReaL's rows to the final metrics. When stage 1's
  audit found images of the split also in training, each standard row has one without them.

  Raises:
    ValueError: for an unusable model directory or dataset, or a scored count that differs from
      the manifest's.
  """
  scorer = passes.Scorer(model_dir, manifest)
  # Read before the passes, so that a duplicates.json that is missing or replaced fails at once. The
  # clean rows come from the cached per-image file names, so a new audit needs no new pass.
  duplicates = (manifest.duplicated_in_training(split)
                if manifest.audited and split != "train" else None)
  class_names = manifest.class_names
  count = manifest.num_examples(split)
  queries = sections.spread_sample(count, num_queries)
  settings = {
      "split": split, "queries": queries.tolist(), "version": CACHE_VERSION,
      "real": real.digest if real is not None else None
  }
  scores = passes.cached(
      model_dir, f"scores-{split}",
      passes.cache_key(scorer, manifest, split, settings), lambda: passes.score_split(
          scorer, manifest, split, batch_size, feature_rows=queries, real=real))
  if len(scores["label"]) != count:
    raise ValueError(f"{split}: scored {len(scores['label'])} images, {manifest.directory}'s "
                     f"manifest lists {count}")
  num_shards = len(manifest.shard_paths("train")) if manifest.has_split("train") else 0
  per_shard = math.ceil(neighbour_pool / num_shards) if num_shards else 0
  pool = None
  if per_shard:
    settings = {"per_shard": per_shard, "version": CACHE_VERSION}
    pool = passes.cached(
        model_dir, "features-train",
        passes.cache_key(scorer, manifest, "train", settings), lambda: passes.score_split(
            scorer, manifest, "train", batch_size, ten_crop=False, limit_per_shard=per_shard))
  mode = "ten_crop" if "ten_crop_top1" in scores else "central"
  predicted = scores[f"{mode}_top5_labels"][:, 0]
  confusions = sections.confusion_pairs(scores["label"], predicted, num_confusions,
                                        EXAMPLES_PER_CONFUSION)
  shown = sections.spread_sample(count, num_predictions)
  neighbours = distances = None
  if pool is not None and len(pool["label"]):
    neighbours, distances = sections.nearest_neighbours(scores["features"].astype(np.float32),
                                                        pool["features"].astype(np.float32),
                                                        num_neighbours)
  wanted = set(shown.tolist()) | set(queries.tolist())
  wanted |= {i for pair in confusions for i in pair["examples"]}
  thumbs = {
      k: jpeg_uri(v) for k, v in passes.read_thumbnails(
          manifest, split, _positions(scores, sorted(wanted)), THUMBNAIL_SIZE).items()
  }
  pool_thumbs = {}
  if neighbours is not None:
    pool_thumbs = {
        k: jpeg_uri(v)
        for k, v in passes.read_thumbnails(manifest, "train", _positions(
            pool, np.unique(neighbours)), THUMBNAIL_SIZE).items()
    }

  def thumb(s, table, i):
    return table[(int(s["shard"][i]), int(s["record"][i]))]

  for pair in confusions:
    pair.update(
        true_name=class_names[pair["true"]], predicted_name=class_names[pair["predicted"]],
        images=[{"image": thumb(scores, thumbs, i), "filename": str(scores["filename"][i])}
                for i in pair["examples"]])
  figure4 = []
  if neighbours is not None:
    for row, query in enumerate(scores["feature_rows"]):
      figure4.append({
          "query":
              _prediction(scores, int(query), class_names, thumbs, mode), "neighbours": [{
                  "image": thumb(pool, pool_thumbs, j), "label": class_names[int(pool["label"][j])],
                  "filename": str(pool["filename"][j]), "distance": float(d)
              } for j, d in zip(neighbours[row], distances[row])]
      })
  try:
    scalars = curves_lib.read_curves(model_dir)
    curves = "data:image/png;base64," + base64.b64encode(curves_lib.render_curves(scalars)).decode()
  except ValueError as err:  # a model directory without summaries still gets the rest
    logging.warning("%s", err)
    scalars, curves = {}, None
  table = sections.per_class_table(scores["label"], scores[f"{mode}_top1"], scores[f"{mode}_top5"],
                                   class_names)
  return {
      "title":
          f"AlexNet report: {model_dir}",
      "split":
          split,
      "count":
          count,
      "mode":
          "ten crops" if mode == "ten_crop" else "the central crop",
      "summary":
          run_summary(manifest, scorer.config, scalars, model_dir, scorer.checkpoint),
      "curves":
          curves,
      "metrics":
          sections.final_metrics(scores, sections.ilsvrc_release(manifest.data), split,
                                 sections.comparable_variant(manifest.data), duplicates),
      "variant_name": (f"ImageNetV2 {imagenetv2.VARIANTS[imagenetv2.variant_of(manifest.data)]}"
                       if imagenetv2.variant_of(manifest.data) else None),
      "classes_top":
          table[:VISIBLE_CLASSES],
      "classes_rest":
          table[VISIBLE_CLASSES:],
      "confusions":
          confusions,
      "predictions": [_prediction(scores, int(i), class_names, thumbs, mode) for i in shown],
      "figure3":
          png_uri(sections.conv1_tiles(scorer.conv1_kernel, scorer.config["model"]["groups"])),
      "figure3_filters":
          scorer.conv1_kernel.shape[-1],
      "groups":
          scorer.config["model"]["groups"],
      "figure4":
          figure4,
      "pool": {
          "images": len(pool["label"]) if pool is not None else 0, "per_shard": per_shard,
          "shards": num_shards, "requested": neighbour_pool
      },
  }


def render(context):
  """The page's HTML, from the package's Jinja2 template with autoescaping on (names are data)."""
  environment = jinja2.Environment(
      loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
      autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
  return environment.get_template(TEMPLATE).render(**context)


def write_page(html, output):
  """Writes the page through a temporary name, so an existing report is replaced only when whole."""
  try:
    tf.io.gfile.makedirs(os.path.dirname(output) or ".")
    with tf.io.gfile.GFile(output + ".tmp", "w") as f:
      f.write(html)
    tf.io.gfile.rename(output + ".tmp", output, overwrite=True)
  except tf.errors.OpError as err:
    raise ValueError(f"{output}: cannot write ({err.message})") from None
