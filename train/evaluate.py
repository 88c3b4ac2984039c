"""Top-1 and top-5 error of a trained model on every image of a split.

  python -m train.evaluate --shards DIR --model_dir DIR [--split validation|test] [--ten_crop]
      [--real_labels real.json] [--exclude_duplicates]

Restores `model_dir/best` if present, else the latest `model_dir/ckpt`, and scores each image of the
split exactly once (the count is checked against the manifest). Errors are pessimistic: an image tied
with other classes at the boundary counts as a miss (see `train/evaluation/metrics.py`). With `--real_labels`
the ILSVRC-2012 validation images are also scored against ImageNet-ReaL's labels
(`train/evaluation/real_labels.py`). An ImageNetV2 dataset (`build_shards --classes_from`) is scored like any
other, its test split by default.

The first line is the standard score, on the split as released, comparable with published figures.
When stage 1's duplicate audit found images of the split also in training (`duplicates.json`), a
second line scores it without them, in the same pass (`train/evaluation/duplicates.py`), so the
user sees what the contamination is worth; `--exclude_duplicates` puts that score first. A dataset
built without the audit prints what it always did: its stdout is what scripts read, and the report
says the audit is missing.
"""

from common import dataset as dataset_lib
from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import sys

from absl import app
from absl import flags
from absl import logging

from common import imagenetv2
from train.evaluation import duplicates as duplicates_lib
from train.evaluation import real_labels
from train.evaluation import trained

FLAGS = flags.FLAGS


def coverage(manifest, split, count):
  """For an ImageNetV2 test set, how many of its images were scored; None for other datasets."""
  variant = imagenetv2.variant_of(manifest.data)
  if split != imagenetv2.SPLIT or variant is None:
    return None
  line = (f"{split}: {count:,} of ImageNetV2 {imagenetv2.VARIANTS[variant]}'s "
          f"{imagenetv2.NUM_IMAGES:,} images scored")
  if count < imagenetv2.NUM_IMAGES:
    line += " (the set is incomplete: its figures are not comparable with published ones)"
  return line


def duplicates_found(manifest, split):
  """How many images of the split the audit found in training, and which of them to leave out of
  the clean score (none with --skip_corrupt, which cannot pair records with names: a warning says
  so); the count is None when there is no audit to report (not audited, or the training split).

  Raises:
    ValueError: --exclude_duplicates with no audit to go by, or on the training split.
  """
  if FLAGS.exclude_duplicates and not manifest.audited:
    raise ValueError(f"{manifest.directory}: --exclude_duplicates needs stage 1's duplicate audit, "
                     "and this dataset was built without it (before the audit, or with "
                     "--noaudit_duplicates); rebuild it with python -m preprocess.build_shards "
                     "(its shards are kept if unchanged)")
  if FLAGS.exclude_duplicates and split == "train":
    raise ValueError("--exclude_duplicates leaves out validation or test images also in training; "
                     "--split=train has none to leave out")
  if not manifest.audited or split == "train":
    return None, frozenset()
  found = manifest.duplicated_in_training(split)
  if found and FLAGS.skip_corrupt and not FLAGS.exclude_duplicates:
    logging.warning(
        "%s: no score without the %d images also in training: it pairs every record "
        "with its file name, which --skip_corrupt cannot promise", split, len(found))
    return len(found), frozenset()
  return len(found), found


def score_line(label, figures, how):
  """The standard line's format: `label: top-1 error ..., loss ... on N images (how)`."""
  return (f"{label}: top-1 error {1 - figures['top1']:.4f}, top-5 error "
          f"{1 - figures['top5']:.4f}, loss {figures['loss']:.4f} on {figures['count']} images "
          f"({how})")


def result_lines(result, split, how, found, exclude):
  """The score lines: the standard one, and the clean one after it (first with `exclude`).

  Args:
    result: what `trained.evaluate_model` returned.
    split: the split scored.
    how: the crops and the checkpoint, for the line's end.
    found: images of the split the audit found in training; None when there is no audit to report.
    exclude: --exclude_duplicates.

  Returns:
    The lines to print.
  """
  lines = [score_line(split, result, how)]
  if found == 0:
    lines.append(f"{split}: the audit found no image also in training")
  elif "clean_count" in result:
    clean = {key: result[f"clean_{key}"] for key in ("loss", "top1", "top5", "count")}
    without = duplicates_lib.without(result["count"] - clean["count"])
    if exclude:
      lines = [
          score_line(f"{split} ({without})", clean, how),
          score_line(f"{split} as released (standard)", result, how)
      ]
    else:
      lines.append(f"{split} {without} (audit): top-1 error {1 - clean['top1']:.4f}, top-5 error "
                   f"{1 - clean['top5']:.4f} on {clean['count']} images")
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    real = real_labels.load(FLAGS.real_labels) if FLAGS.real_labels else None
    manifest = dataset_lib.load(FLAGS.shards)
    split = FLAGS.split or trained.default_split(manifest)
    found, duplicates = duplicates_found(manifest, split)
    result = trained.evaluate_model(manifest, FLAGS.model_dir, split, ten_crop=FLAGS.ten_crop,
                                    batch_size=FLAGS.batch_size, skip_corrupt=FLAGS.skip_corrupt,
                                    real=real, duplicates=duplicates)
  except ValueError as e:  # ManifestError, TrainingError, DataError and restore's.
    logging.error("%s", e)
    sys.exit(1)
  # The result lines go to stdout, for people and for scripts.
  how = f"{'ten crops' if FLAGS.ten_crop else 'central crop'}, {result['checkpoint']}"
  for line in result_lines(result, split, how, found, FLAGS.exclude_duplicates):
    print(line)
  if line := coverage(manifest, split, result["count"]):
    print(line)
  if real is not None:
    print(f"{split} ReaL: top-1 error {1 - result['real_top1']:.4f}, top-5 error "
          f"{1 - result['real_top5']:.4f} on {result['real_count']} images; "
          f"{result['real_left_out']} left out (no ReaL label); the split holds "
          f"{result['count']} of ReaL's {real_labels.NUM_IMAGES:,} images")


def define_flags(flag_values=FLAGS):
  """Defines the flags, only when run as a command, so that entry modules import together.

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  into = {"flag_values": flag_values}
  flags.DEFINE_string("shards", None, "Dataset directory holding manifest.json and the shards.",
                      **into)
  flags.DEFINE_string("model_dir", None, "The trainer's --model_dir.", **into)
  flags.DEFINE_enum("split", None, ["validation", "test", "train"],
                    "Split to score (default: validation, or an ImageNetV2 dataset's test).",
                    **into)
  flags.DEFINE_bool("ten_crop", False, "Average the softmax over the paper's ten crops.", **into)
  flags.DEFINE_integer("batch_size", 128, "Images per batch.", lower_bound=1, **into)
  flags.DEFINE_bool("skip_corrupt", False, "Skip unreadable records (the count check then warns).",
                    **into)
  flags.DEFINE_string(
      "real_labels", None,
      "ImageNet-ReaL's real.json: also score the ILSVRC-2012 validation images "
      "against every label ReaL gives them.", **into)
  flags.DEFINE_bool(
      "exclude_duplicates", False,
      "Put the score without the images stage 1's duplicate audit found also in "
      "training first, as the headline; the standard score follows it, labelled.", **into)
  flags.mark_flag_as_required("shards", **into)
  flags.mark_flag_as_required("model_dir", **into)


if __name__ == "__main__":
  define_flags()
  app.run(main)
