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
import signal
import sys

from preprocess.job import beam_logs

beam_logs.silence_import_warnings()  # before Beam is imported (ALEXNET_FULL_LOGS=1: not)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from common import settings  # noqa: E402
from preprocess import errors  # noqa: E402
from preprocess import paths  # noqa: E402
from preprocess import stores  # noqa: E402
from preprocess.inputs import sources  # noqa: E402
from preprocess.job import build  # noqa: E402
from preprocess.job import faults  # noqa: E402
from preprocess.job import options as options_lib  # noqa: E402
from preprocess.job import runners  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines stage 1's flags (called only when run as a command): one per setting of
  `BuildOptions`, generated from its fields with their help, bounds and validators.

  Args:
    flag_values: the `FlagValues` to define them in (a fresh one in tests).
  """
  settings.define_flags(options_lib.BuildOptions, flag_values)


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
  options = settings.from_flags(options_lib.BuildOptions, FLAGS)
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
    logging.error(
        "stopped by Ctrl-C; the shards finished so far are kept in %s; rerun the same "
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
