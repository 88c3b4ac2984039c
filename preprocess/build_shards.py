r"""Builds validated 256x256 TFRecord shards and manifest.json from an ImageNet tree.

  python -m preprocess.build_shards --input_dir DIR --output_dir DIR [flags] [Beam pipeline options]

Flags this module does not define are handed to Beam as pipeline options, so the same command runs on
a cluster, e.g. `--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp
--setup_file=./setup.py`. Without `--runner` it uses Beam's local runner with one process per core.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import contextlib
import io
import logging as std_logging
import math
import signal
import sys

from preprocess.job import beam_logs

beam_logs.silence_import_warnings()  # before Beam is imported (ALEXNET_FULL_LOGS=1: not)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from preprocess import errors  # noqa: E402
from preprocess import paths  # noqa: E402
from preprocess import stores  # noqa: E402
from preprocess.conversion import convert  # noqa: E402
from preprocess.inputs import class_lists  # noqa: E402
from preprocess.inputs import sources  # noqa: E402
from preprocess.job import build  # noqa: E402
from preprocess.job import faults  # noqa: E402
from preprocess.job import runners  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines stage 1's flags and their validators (called only when run as a command).

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  into = {"flag_values": flag_values}
  flags.DEFINE_string("input_dir", None,
                      "ImageNet as downloaded: the ILSVRC tars, Kaggle's layout or its zip, or an "
                      "extracted train/ (and val/ or validation/, test/); forms may be mixed.", **into)
  flags.DEFINE_string("output_dir", None, "Where shards, mean.npy and manifest.json are written.",
                      **into)
  flags.DEFINE_enum("encoding", "jpeg", ["jpeg", "raw"],
                    "jpeg: ~4x smaller than the source, decoded at train time; raw: lossless uint8, "
                    "about 2x the source, no decode.", **into)
  flags.DEFINE_integer("quality", 95, "JPEG quality of the stored crops.", lower_bound=1,
                       upper_bound=100, **into)
  flags.DEFINE_enum("jpeg_subsampling", convert.JPEG_SUBSAMPLING, list(convert.JPEG_SUBSAMPLINGS),
                    "Chroma subsampling of the stored JPEGs. 4:4:4 keeps the source's colour "
                    "detail; 4:2:0 halves the colour resolution for ~20% fewer bytes (saturated fine "
                    "detail drops below 30 dB PSNR).", **into)
  flags.DEFINE_integer("seed", 0, "Seed of the path hash that assigns images to shards and orders "
                       "them.", lower_bound=0, **into)
  for split, name in (("train", "Training"), ("validation", "Validation"), ("test", "Test")):
    flags.DEFINE_integer(f"num_shards_{split}", None, f"{name} shards (default: ~150 MB each).",
                         lower_bound=1, **into)
  flags.DEFINE_string("validation_ground_truth", None,
                      "Labels of a flat val/ folder, one ILSVRC ID or WNID per line in sorted "
                      "filename order (default: the devkit's ILSVRC20xx_validation_ground_truth.txt "
                      "if found).", **into)
  flags.DEFINE_string("test_ground_truth", None, "Labels of a flat test/ folder, likewise.", **into)
  flags.DEFINE_string("devkit_meta", None,
                      "The devkit's meta.mat, mapping ILSVRC IDs to WNIDs and names (default: found "
                      "under --input_dir if present).", **into)
  flags.DEFINE_string("class_names", None,
                      "A synset_words.txt or LOC_synset_mapping.txt for class names (default: found "
                      "under --input_dir if present).", **into)
  for split in ("train", "validation", "test"):
    flags.DEFINE_string(f"{split}_archive", None,
                        f"The {split} images as an uncompressed tar (default: found at the root of "
                        "--input_dir by content, e.g. ILSVRC2012_img_train.tar); read in place.",
                        **into)
  flags.DEFINE_string("devkit_archive", None,
                      "The devkit's .tar.gz (meta.mat, validation ground truth; default: found at the "
                      "root of --input_dir by content).", **into)
  flags.DEFINE_string("classes_from", None,
                      "Build an evaluation-only ImageNetV2 dataset from --input_dir (a variant's "
                      "folder, or its decompressed tar), in the classes of this training dataset "
                      "(its --output_dir).", **into)
  flags.DEFINE_string("classes", None,
                      "Keep only these classes: a file of WNIDs (one a line) or a list this project "
                      f"ships ({', '.join(sorted(class_lists.NAMED))}). Labels are 0-based over "
                      "them in sorted WNID order; validation and test keep the same classes.",
                      **into)
  flags.DEFINE_integer("per_class", None,
                       "Keep N training images per class, chosen by the hash of each file name and "
                       "--seed (the same on every input form and runner); a class with fewer keeps "
                       "all.", lower_bound=1, **into)
  flags.DEFINE_string("train_list", None,
                      "Keep exactly the training files named in this file, one name a line (the "
                      "form of SimCLR's 1percent.txt, e.g. n01440764_10026.JPEG).", **into)
  flags.DEFINE_integer("max_pixels", 89_478_485,
                       "Images with more pixels are skipped as decompression bombs, before decoding.",
                       lower_bound=1, **into)
  flags.DEFINE_float("max_skip_fraction", 0.5,
                     "Fail (after writing report.json) if more than this fraction of images is "
                     "skipped: the input is mostly not images, a wrong folder, say.",
                     lower_bound=0.0, upper_bound=1.0, **into)
  flags.DEFINE_bool("audit_duplicates", True,
                    "Fingerprint every image and list the copies among them (duplicates.json); with "
                    "--classes_from, against that dataset's training images too.", **into)
  flags.DEFINE_enum("drop_duplicates", None, ["train"],
                    "train: leave out the training images the audit finds to be copies of "
                    "validation or test images, so the held-out splits stay the standard ones; the "
                    "manifest lists what was left out.", **into)
  flags.DEFINE_bool("overwrite", False, "Replace a complete dataset in --output_dir.", **into)
  flags.DEFINE_float("progress_seconds", 30.0, "Seconds between progress lines.", lower_bound=0.1,
                     **into)
  # Bounds alone let NaN through (every comparison with it is false).
  flags.register_validator("max_skip_fraction", math.isfinite, "must be a number in [0, 1]",
                           **into)
  flags.register_validator("progress_seconds", math.isfinite, "must be a finite number of seconds",
                           **into)
  flags.mark_flag_as_required("input_dir", **into)
  flags.mark_flag_as_required("output_dir", **into)


def pipeline_options(beam_args):
  """Beam options from the flags we do not define; unknown ones are an error, not a silent no-op."""
  beam_args = beam_logs.harness_options() + runners.with_default_runner(beam_args)
  if any("DaskRunner" in arg for arg in beam_args):
    import apache_beam.runners.dask.dask_runner  # noqa: F401  (registers the --dask_* options)
  options = PipelineOptions(beam_args)
  try:
    with contextlib.redirect_stderr(io.StringIO()) as usage:  # argparse prints its whole usage
      known = options.get_all_options(retain_unknown_options=False)
  except SystemExit:
    raise errors.BuildError(usage.getvalue().strip().splitlines()[-1]) from None
  if (known.get("direct_num_workers") or 0) < 0:
    raise errors.BuildError(f"--direct_num_workers={known['direct_num_workers']}: must be >= 0 "
                           "(0: one worker per core)")
  everything = options.get_all_options(retain_unknown_options=True)
  unknown = sorted(set(everything) - set(known))
  if unknown:
    raise errors.BuildError(f"unknown flag --{unknown[0]} (not a flag of this job nor a Beam "
                           "pipeline option)")
  return options


def check_workers(beam_options):
  """On a Dask cluster, one line instead of a deserialization traceback if workers lack our code."""
  all_options = beam_options.get_all_options()
  # Without an address Beam starts a local cluster, whose workers share this environment.
  address = all_options.get("address")  # --dask_client_address
  if all_options.get("runner") != runners.DASK_RUNNER or not address:
    return
  try:
    missing = runners.missing_packages_on_dask(address)
  except (OSError, TimeoutError) as e:
    raise errors.BuildError(f"--dask_client_address={address}: cannot reach the scheduler "
                           f"({e.__class__.__name__}: {e})") from None
  if missing:
    raise errors.BuildError(
        f"the Dask workers cannot import {missing}: install this project on every worker "
        "(pip install .) or start them with it on PYTHONPATH (see WORKSPACE.md)")


def main(argv):
  # Beam's local runner forwards every worker's harness chatter; keep our own progress readable.
  std_logging.getLogger("apache_beam").setLevel(std_logging.WARNING)
  options = build.BuildOptions(
      input_dir=FLAGS.input_dir, output_dir=FLAGS.output_dir, encoding=FLAGS.encoding,
      quality=FLAGS.quality, jpeg_subsampling=FLAGS.jpeg_subsampling, seed=FLAGS.seed,
      num_shards={"train": FLAGS.num_shards_train, "validation": FLAGS.num_shards_validation,
                  "test": FLAGS.num_shards_test},
      max_pixels=FLAGS.max_pixels, max_skip_fraction=FLAGS.max_skip_fraction,
      overwrite=FLAGS.overwrite,
      ground_truth={"validation": FLAGS.validation_ground_truth, "test": FLAGS.test_ground_truth},
      devkit_meta=FLAGS.devkit_meta, class_names=FLAGS.class_names,
      archives={"train": FLAGS.train_archive, "validation": FLAGS.validation_archive,
                "test": FLAGS.test_archive},
      devkit_archive=FLAGS.devkit_archive,
      progress_seconds=FLAGS.progress_seconds, classes_from=FLAGS.classes_from,
      classes=FLAGS.classes, per_class=FLAGS.per_class, train_list=FLAGS.train_list,
      audit_duplicates=FLAGS.audit_duplicates, drop_duplicates=FLAGS.drop_duplicates)
  try:
    beam_options = pipeline_options(argv[1:])
    check_workers(beam_options)
    with beam_logs.filtered_stderr():
      build.run_build(options, beam_options)
  except (errors.BuildError, sources.InputError, stores.Unavailable, stores.NoCredentials) as e:
    logging.error("%s", e)
    sys.exit(1)
  except paths.PathError as e:  # a file or store failing while planning, already one line
    logging.error("%s", e)
    sys.exit(1)
  except faults.Stopped as e:  # a lost worker, Ctrl-C or SIGTERM while the job ran
    logging.error("%s", e)
    faults.exit_now(e.exit_code)
  except KeyboardInterrupt:  # before or after the job: what it finished stays
    logging.error("stopped by Ctrl-C; the shards finished so far are kept in %s; rerun the same "
                  "command to resume", FLAGS.output_dir)
    faults.exit_now(faults.EXIT_CODES[signal.SIGINT])


def parse_flags(argv):
  """Parses our flags and leaves the rest for Beam; a bad flag of ours is one line and exit 1."""
  try:
    return FLAGS(argv, known_only=True)
  except flags.Error as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\nPass --helpfull to see all flags.\n")
    sys.exit(1)


def run():
  define_flags()
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
