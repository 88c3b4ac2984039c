"""Scoring each image of a split by its file name: what ImageNet-ReaL and the clean score need.

`scoring.evaluate_split` sums hits over batches of interleaved shards and never knows which image
it scored. Scoring against ReaL's labels (`real_labels.py`), or without the images stage 1's audit
found in training (`duplicates.py`), needs each image's `image/filename`: `evaluate_split` here
reads the split through `scoring.named_batches` (file order, one read of each shard), keeps each
image's loss and pessimistic hits, and averages them over the images each figure covers, so every
figure comes from the same single pass. `trained.evaluate_model` takes this path only when one of
those is asked for, so plain evaluation stays as it was.
"""

import collections

import numpy as np
import tensorflow as tf

from train.evaluation import duplicates as duplicates_lib
from train.evaluation import metrics
from train.evaluation import real_labels
from train.evaluation import scoring

TOP_K = (1, 5)


def make_step(model, prep):
  """The compiled step: each image's loss and top-1/top-5 hits (`metrics.top_k_correct`), and
  with label sets (bool `[images, classes]`, or None) its ReaL hits (`top_k_correct_any`)."""

  @tf.function(reduce_retracing=True)
  def step(batch, label_sets):
    probabilities, loss = scoring.score_images(model, batch, prep)
    result = {"loss": loss}
    for k in TOP_K:
      result[f"top{k}"] = metrics.top_k_correct(probabilities, batch["label"], k)
      if label_sets is not None:  # an image with no ReaL label is a miss here, left out later
        result[f"real_top{k}"] = real_labels.top_k_correct_any(probabilities, label_sets, k)
    return result

  return step


def evaluate_split(model, prep, manifest, split, *, batch_size, ten_crop=False, real=None,
                   duplicates=frozenset()):
  """Scores every image of a split once: on its own labels, on ReaL's, and without duplicates.

  Args:
    model: the restored Keras model.
    prep: the dataset's `preparation.Preparation`.
    manifest: the dataset's `Manifest`.
    split: the split to score.
    batch_size: images per batch.
    ten_crop: average the softmax outputs of the paper's ten crops.
    real: a `real_labels.RealLabels` to score against ImageNet-ReaL's labels too, or None.
    duplicates: the split's file names the audit found in training
      (`Manifest.duplicated_in_training`), left out of the clean figures.

  Returns:
    `{loss, top1, top5, count}` as `scoring.evaluate_split`; with `real`, `real_top1`, `real_top5`
    (accuracies over the images with ReaL labels), `real_count` (those images) and
    `real_left_out` (the split's images whose ReaL list is empty); with `duplicates`,
    `clean_loss`, `clean_top1`, `clean_top5` and `clean_count`, the same over the images kept.

  Raises:
    ValueError: classes or file names that ReaL does not label, or duplicates the split does not
      hold.
    TrainingError: when the number of images scored differs from the manifest's.
  """
  if real is not None:
    real_labels.check_classes(manifest)
  step = make_step(model, prep)
  columns, agree, seen = collections.defaultdict(list), 0, set()
  for _, _, names, batch in scoring.named_batches(manifest, split, batch_size=batch_size,
                                                  ten_crop=ten_crop):
    sets = None
    if real is not None:
      # A split whose names are not ReaL's is refused at its first batch, before it is scored.
      sets = real.label_sets(real.indices(names, seen), manifest.num_classes)
      agree += int(sets[np.arange(len(sets)), batch["label"].numpy()].sum())
      columns["real_labelled"].append(sets.any(axis=1))
    for key, values in step(batch, None if sets is None else tf.constant(sets)).items():
      columns[key].append(values.numpy())
    columns["filename"].append(np.array(names, dtype=str))
  images = {key: np.concatenate(parts) for key, parts in columns.items()}
  names = images.get("filename", np.zeros(0, str))
  scoring.check_count(len(names), manifest, split)
  result = _figures(images, np.ones(len(names), bool))
  if real is not None:
    labelled = images.get("real_labelled", np.zeros(0, bool))
    real_labels.warn_if_disagreeing(agree, int(labelled.sum()))
    result.update({f"real_top{k}": _mean(images, f"real_top{k}", labelled) for k in TOP_K},
                  real_count=int(labelled.sum()), real_left_out=int((~labelled).sum()))
  if duplicates:
    keep = duplicates_lib.kept(names, duplicates, split)
    result.update({f"clean_{key}": value for key, value in _figures(images, keep).items()})
  return result


def _figures(images, keep):
  """`{loss, top1, top5, count}` (mean loss, accuracies) over the images `keep` marks."""
  return {
      "loss": _mean(images, "loss", keep),
      **{f"top{k}": _mean(images, f"top{k}", keep) for k in TOP_K}, "count": int(keep.sum())
  }


def _mean(images, key, keep):
  """The mean of a per-image column over the images `keep` marks; 0 when it marks none."""
  count = int(keep.sum())
  return float(images[key][keep].astype(np.float64).sum() / count) if count else 0.0
