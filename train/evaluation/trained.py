"""Scoring a trained model directory on a split: the checkpoint restored, its label map checked.

`train.evaluate` prints what `evaluate_model` returns; `train.report` takes its `default_split`.
"""

import tensorflow as tf

from common import imagenetv2
from train.errors import TrainingError
from train.evaluation import per_image
from train.evaluation import scoring
from train.model_dir import directory as model_dir_lib
from train.model_dir import restore
from train import preparation


def default_split(manifest):
  """The split scored without --split: validation, or the test set of an ImageNetV2 dataset."""
  if not manifest.has_split("validation") and imagenetv2.variant_of(manifest.data):
    return imagenetv2.SPLIT
  return "validation"


def evaluate_model(manifest, model_dir, split, *, ten_crop=False, batch_size=128,
                   skip_corrupt=False, real=None, duplicates=frozenset()):
  """Scores a trained model on one split of a dataset.

  Args:
    manifest: the dataset's `Manifest`.
    model_dir: the trainer's model directory.
    split: the split to score.
    ten_crop: average the softmax outputs of the paper's ten crops instead of the central crop.
    batch_size: images per batch.
    skip_corrupt: skip unreadable records instead of failing.
    real: a `real_labels.RealLabels` to score ImageNet-ReaL too.
    duplicates: the split's file names stage 1's audit found in training
      (`Manifest.duplicated_in_training`): also score the split without them.

  Returns:
    `{loss, top1, top5, count, checkpoint}` where top1 and top5 are accuracies; with `real`, also
    `real_top1`, `real_top5`, `real_count` and `real_left_out`, and with `duplicates`,
    `clean_loss`, `clean_top1`, `clean_top5` and `clean_count` (see `per_image.evaluate_split`).

  Raises:
    ValueError: if the model was trained on another label map, or the model directory or the
      checkpoint is unusable, or ReaL does not label the split, or the split does not hold the
      duplicates; `TrainingError` if the image count differs from the manifest.
  """
  if real is not None and skip_corrupt:
    raise ValueError("--real_labels pairs every record with its file name; it cannot be combined "
                     "with --skip_corrupt")
  if duplicates and skip_corrupt:
    raise ValueError("the score without the images also in training pairs every record with its "
                     "file name; it cannot be combined with --skip_corrupt")
  model, config, prefix = restore.restore_model(model_dir)
  if config["classes"] != manifest.data["classes"]:
    raise TrainingError(f"{model_dir}: trained on a different label map than "
                        f"{manifest.directory}")
  stats = config.get("stats", manifest.stats)
  prep = preparation.Preparation.from_stats(model_dir_lib.read_mean(model_dir, manifest.image_size),
                                            stats)
  if real is not None or duplicates:
    result = per_image.evaluate_split(model, prep, manifest, split, batch_size=batch_size,
                                      ten_crop=ten_crop, real=real, duplicates=duplicates)
    return {**result, "checkpoint": prefix}
  strategy = tf.distribute.get_strategy()
  eval_fn = scoring.make_eval_fn(strategy, model, prep)
  result = scoring.evaluate_split(strategy, eval_fn, manifest, split, batch_size=batch_size,
                                  ten_crop=ten_crop, skip_corrupt=skip_corrupt)
  return {**result, "checkpoint": prefix}
