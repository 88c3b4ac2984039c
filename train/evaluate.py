"""Top-1 and top-5 error of a trained model on every image of a split.

  python -m train.evaluate --shards DIR --model_dir DIR [--split validation|test] [--ten_crop]
      [--real_labels real.json]

Restores `model_dir/best` if present, else the latest `model_dir/ckpt`, and scores each image of the
split exactly once (the count is checked against the manifest). Errors are pessimistic: an image tied
with other classes at the boundary counts as a miss (see `train/metrics.py`). With `--real_labels`
the ILSVRC-2012 validation images are also scored against ImageNet-ReaL's labels
(`train/real_labels.py`). An ImageNetV2 dataset (`build_shards --classes_from`) is scored like any
other, its test split by default.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import sys

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from common import imagenetv2
from common import manifest as manifest_lib
from train import evaluation
from train import input_pipeline
from train import model_dir as model_dir_lib
from train import real_labels
from train import restore
from train.errors import TrainingError

FLAGS = flags.FLAGS


def default_split(manifest):
  """The split scored without --split: validation, or the test set of an ImageNetV2 dataset."""
  if not manifest.has_split("validation") and imagenetv2.variant_of(manifest.data):
    return imagenetv2.SPLIT
  return "validation"


def evaluate_model(manifest, model_dir, split, *, ten_crop=False, batch_size=128,
                   skip_corrupt=False, real=None):
  """Scores a trained model on one split of a dataset.

  Args:
    manifest: the dataset's `Manifest`.
    model_dir: the trainer's model directory.
    split: the split to score.
    ten_crop: average the softmax outputs of the paper's ten crops instead of the central crop.
    batch_size: images per batch.
    skip_corrupt: skip unreadable records instead of failing.
    real: a `real_labels.RealLabels` to score ImageNet-ReaL too.

  Returns:
    `{loss, top1, top5, count, checkpoint}` where top1 and top5 are accuracies; with `real`, also
    `real_top1`, `real_top5`, `real_count` and `real_left_out` (see `real_labels.evaluate_split`).

  Raises:
    ValueError: if the model was trained on another label map, or the model directory or the
      checkpoint is unusable, or ReaL does not label the split; `TrainingError` if the image
      count differs from the manifest.
  """
  if real is not None and skip_corrupt:
    raise ValueError("--real_labels pairs every record with its file name; it cannot be combined "
                     "with --skip_corrupt")
  model, config, prefix = restore.restore_model(model_dir)
  if config["classes"] != manifest.data["classes"]:
    raise TrainingError(f"{model_dir}: trained on a different label map than "
                        f"{manifest.directory}")
  stats = config.get("stats", manifest.stats)
  prep = input_pipeline.Preparation.from_stats(
      model_dir_lib.read_mean(model_dir, manifest.image_size), stats)
  if real is not None:
    result = real_labels.evaluate_split(model, prep, manifest, split, real,
                                        batch_size=batch_size, ten_crop=ten_crop)
    return {**result, "checkpoint": prefix}
  strategy = tf.distribute.get_strategy()
  eval_fn = evaluation.make_eval_fn(strategy, model, prep)
  result = evaluation.evaluate_split(strategy, eval_fn, manifest, split, batch_size=batch_size,
                                     ten_crop=ten_crop, skip_corrupt=skip_corrupt)
  return {**result, "checkpoint": prefix}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    real = real_labels.load(FLAGS.real_labels) if FLAGS.real_labels else None
    manifest = manifest_lib.load(FLAGS.shards)
    split = FLAGS.split or default_split(manifest)
    result = evaluate_model(manifest, FLAGS.model_dir, split, ten_crop=FLAGS.ten_crop,
                            batch_size=FLAGS.batch_size, skip_corrupt=FLAGS.skip_corrupt,
                            real=real)
  except ValueError as e:  # ManifestError, TrainingError, input_pipeline.DataError and restore's.
    logging.error("%s", e)
    sys.exit(1)
  # The result lines go to stdout, for people and for scripts.
  how = f"{'ten crops' if FLAGS.ten_crop else 'central crop'}, {result['checkpoint']}"
  print(f"{split}: top-1 error {1 - result['top1']:.4f}, top-5 error "
        f"{1 - result['top5']:.4f}, loss {result['loss']:.4f} on {result['count']} images ({how})")
  if real is not None:
    print(f"{split} ReaL: top-1 error {1 - result['real_top1']:.4f}, top-5 error "
          f"{1 - result['real_top5']:.4f} on {result['real_count']} images; "
          f"{result['real_left_out']} left out (no ReaL label); the split holds "
          f"{result['count']} of ReaL's {real_labels.NUM_IMAGES:,} images")


def define_flags():
  """Defines the flags, only when run as a command, so that entry modules import together."""
  flags.DEFINE_string("shards", None, "Dataset directory holding manifest.json and the shards.")
  flags.DEFINE_string("model_dir", None, "The trainer's --model_dir.")
  flags.DEFINE_enum("split", None, ["validation", "test", "train"],
                    "Split to score (default: validation, or an ImageNetV2 dataset's test).")
  flags.DEFINE_bool("ten_crop", False, "Average the softmax over the paper's ten crops.")
  flags.DEFINE_integer("batch_size", 128, "Images per batch.", lower_bound=1)
  flags.DEFINE_bool("skip_corrupt", False, "Skip unreadable records (the count check then warns).")
  flags.DEFINE_string("real_labels", None,
                      "ImageNet-ReaL's real.json: also score the ILSVRC-2012 validation images "
                      "against every label ReaL gives them.")
  flags.mark_flag_as_required("shards")
  flags.mark_flag_as_required("model_dir")


if __name__ == "__main__":
  define_flags()
  app.run(main)
