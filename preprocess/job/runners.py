"""Choosing the runner: the local multi-process runner by default, any Beam runner by `--runner`.

Since Beam 2.68 `DirectRunner` first tries the Prism runner, which downloads a Go binary at run time
and ignores `--direct_num_workers`; it falls back to the multi-process runner only when that fails
(offline, say). So the default never names `DirectRunner`: `LocalRunner` goes straight to the FnApi
runner that `DirectRunner` would fall back to, with the same options handed to its workers.
"""

import importlib

from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineRunner

LOCAL_RUNNER_ARGS = [
    "--runner=preprocess.job.runners.LocalRunner", "--direct_running_mode=multi_processing",
    "--direct_num_workers=0", "--default_sdk_harness_log_level=WARNING"
]
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
# What every worker must be able to import to run our DoFns.
PACKAGES = ("common", "preprocess")


class LocalRunner(PipelineRunner):
  """Beam's FnApi runner, one worker process per core (`--direct_num_workers`), never Prism."""

  def run_pipeline(self, pipeline, options):
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision_info = fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision_info).run_pipeline(pipeline, options)


def with_default_runner(beam_args):
  """`beam_args` with the local runner's options prepended unless they choose a runner."""
  if any(arg.startswith("--runner") for arg in beam_args):
    return list(beam_args)
  return LOCAL_RUNNER_ARGS + list(beam_args)


def missing_packages_on_dask(address):
  """The first of our packages the Dask cluster's workers cannot import, with the reason, or None.

  Beam's Dask runner ships pickled DoFns; a worker without this project fails deep inside
  deserialization with a traceback that does not say so. Asking each worker to import the packages
  first turns that into one line. Functions of the standard library are sent, not ours, so the check
  itself runs on a worker that lacks the project.
  """
  from distributed import Client  # pylint: disable=import-outside-toplevel  (Dask is optional)
  with Client(address, timeout=30) as client:
    for package in PACKAGES:
      try:
        client.run(importlib.import_module, package)
      except ImportError as e:
        return f"{package} ({e})"
  return None
