"""One self-contained HTML page showing what a trained AlexNet learned and where it fails.

  python -m train.report --model_dir DIR [--shards DIR] [--split validation] [--output FILE.html]

Sections: run summary, learning curves, final metrics (central crop and ten crops, beside the paper's
when comparable), per-class accuracy, confusions, predictions, and the paper's Figure 3 (conv1
kernels) and Figure 4 (nearest training images in fc7 space). The scoring and fc7 passes are cached
in `model_dir/report_cache/`, so a second report only renders.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import sys

from absl import app
from absl import flags
from absl import logging

from common import manifest as manifest_lib
from train import report_page
from train import model_dir as model_dir_lib

DEFAULT_OUTPUT_NAME = "report.html"

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  output = FLAGS.output or os.path.join(FLAGS.model_dir, DEFAULT_OUTPUT_NAME)
  try:
    shards = FLAGS.shards or model_dir_lib.read_config(FLAGS.model_dir).get("flags", {}).get("shards")
    if not shards:
      raise ValueError(f"{FLAGS.model_dir}/{model_dir_lib.CONFIG_NAME} names no dataset; pass --shards")
    manifest = manifest_lib.load(shards)
    context = report_page.build_context(
        manifest, FLAGS.model_dir, FLAGS.split, batch_size=FLAGS.batch_size,
        neighbour_pool=FLAGS.neighbour_pool, num_queries=FLAGS.num_queries,
        num_neighbours=FLAGS.num_neighbours, num_predictions=FLAGS.num_predictions,
        num_confusions=FLAGS.num_confusions)
    report_page.write_page(report_page.render(context), output)
  except ValueError as err:  # ManifestError, input_pipeline.DataError, restore's and ours.
    logging.error("%s", err)
    sys.exit(1)
  print(output)  # the command's one result: where the page is


def define_flags():
  """Defines the flags, only when run as a command, so that tests can import several commands."""
  flags.DEFINE_string("model_dir", None, "The trainer's model directory.")
  flags.DEFINE_string("shards", None, "Dataset directory; default: the one config.json names.")
  flags.DEFINE_enum("split", "validation", ["validation", "test", "train"], "Split to score.")
  flags.DEFINE_string("output", None, f"HTML file to write; default model_dir/{DEFAULT_OUTPUT_NAME}.")
  flags.DEFINE_integer("batch_size", 32, "Images per batch (each image is ten crops).",
                       lower_bound=1)
  flags.DEFINE_integer("neighbour_pool", 2000,
                       "Training images whose fc7 features Figure 4 searches (a sample spread over "
                       "the training shards).", lower_bound=0)
  flags.DEFINE_integer("num_queries", 6, "Images of the split shown with their neighbours.",
                       lower_bound=0)
  flags.DEFINE_integer("num_neighbours", 6, "Nearest training images per query.", lower_bound=1)
  flags.DEFINE_integer("num_predictions", 24, "Images in the predictions grid.", lower_bound=0)
  flags.DEFINE_integer("num_confusions", 12, "Most confused class pairs shown.", lower_bound=0)
  flags.mark_flag_as_required("model_dir")


if __name__ == "__main__":
  define_flags()
  app.run(main)
