"""One self-contained HTML page showing what a trained AlexNet learned and where it fails.

  python -m train.report --model_dir DIR [--shards DIR] [--split validation] [--output FILE.html]
      [--real_labels real.json]

Sections: run summary, learning curves, final metrics (central crop and ten crops, each also without
the images stage 1's duplicate audit found in training, ImageNet-ReaL's with --real_labels, beside
the paper's and torchvision's published figures where they apply, also for an ImageNetV2 dataset),
per-class accuracy, confusions, predictions, and the paper's Figure 3 (conv1
kernels) and Figure 4 (nearest training images in fc7 space). The scoring and fc7 passes are cached
in `model_dir/report_cache/`, so a second report only renders.
"""

from common import dataset as dataset_lib
from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import sys

from absl import app
from absl import flags
from absl import logging

from train.evaluation import real_labels
from train.evaluation import trained
from train.model_dir import directory as model_dir_lib
from train.report import page

DEFAULT_OUTPUT_NAME = "report.html"

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  output = FLAGS.output or os.path.join(FLAGS.model_dir, DEFAULT_OUTPUT_NAME)
  try:
    shards = FLAGS.shards or model_dir_lib.read_config(FLAGS.model_dir).get("flags",
                                                                            {}).get("shards")
    if not shards:
      raise ValueError(
          f"{FLAGS.model_dir}/{model_dir_lib.CONFIG_NAME} names no dataset; pass --shards")
    real = real_labels.load(FLAGS.real_labels) if FLAGS.real_labels else None
    manifest = dataset_lib.load(shards)
    context = page.build_context(manifest, FLAGS.model_dir, FLAGS.split or
                                 trained.default_split(manifest), batch_size=FLAGS.batch_size,
                                 neighbour_pool=FLAGS.neighbour_pool, num_queries=FLAGS.num_queries,
                                 num_neighbours=FLAGS.num_neighbours,
                                 num_predictions=FLAGS.num_predictions,
                                 num_confusions=FLAGS.num_confusions, real=real)
    page.write_page(page.render(context), output)
  except ValueError as err:  # ManifestError, DataError, restore's and ours.
    logging.error("%s", err)
    sys.exit(1)
  print(output)  # the command's one result: where the page is


def define_flags(flag_values=FLAGS):
  """Defines the flags, only when run as a command, so that tests can import several commands.

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  into = {"flag_values": flag_values}
  flags.DEFINE_string("model_dir", None, "The trainer's model directory.", **into)
  flags.DEFINE_string("shards", None, "Dataset directory; default: the one config.json names.",
                      **into)
  flags.DEFINE_enum("split", None, ["validation", "test", "train"],
                    "Split to score (default: validation, or an ImageNetV2 dataset's test).",
                    **into)
  flags.DEFINE_string(
      "real_labels", None,
      "ImageNet-ReaL's real.json: also score the ILSVRC-2012 validation images "
      "against every label ReaL gives them.", **into)
  flags.DEFINE_string("output", None,
                      f"HTML file to write; default model_dir/{DEFAULT_OUTPUT_NAME}.", **into)
  flags.DEFINE_integer("batch_size", 32, "Images per batch (each image is ten crops).",
                       lower_bound=1, **into)
  flags.DEFINE_integer(
      "neighbour_pool", 2000,
      "Training images whose fc7 features Figure 4 searches (a sample spread over "
      "the training shards).", lower_bound=0, **into)
  flags.DEFINE_integer("num_queries", 6, "Images of the split shown with their neighbours.",
                       lower_bound=0, **into)
  flags.DEFINE_integer("num_neighbours", 6, "Nearest training images per query.", lower_bound=1,
                       **into)
  flags.DEFINE_integer("num_predictions", 24, "Images in the predictions grid.", lower_bound=0,
                       **into)
  flags.DEFINE_integer("num_confusions", 12, "Most confused class pairs shown.", lower_bound=0,
                       **into)
  flags.mark_flag_as_required("model_dir", **into)


if __name__ == "__main__":
  define_flags()
  app.run(main)
