"""Keeping `build_shards` output to our own lines and real warnings.

Beam prints start-up chatter in the launching process and in every local worker process:
`apitools not found ...` (logged when `apache_beam.io` is imported; we use no BigQuery),
`Logging handler created.`, `No semi_persistent_directory found ...` and `Discarding unparseable
args ...`, several lines per worker, between our progress lines. They come from two places, so two
mechanisms quiet them:
  - lines a worker logs after reading its pipeline options: Beam's own
    `--sdk_harness_log_level_overrides`, a pipeline option honoured by every runner;
  - lines printed before any option applies (the import-time warning, the first harness line, and
    what TensorFlow's C++ code prints while each worker imports it, before its log is initialised
    and so whatever TF_CPP_MIN_LOG_LEVEL says: `WARNING: All log messages before
    absl::InitializeLog() ...`, `I0000 00:00:... oneDNN custom operations are on`, `... Could not
    find cuda drivers`) by local worker processes, which inherit our stderr: a filter on that file
    descriptor, which drops exactly those lines and passes everything else (tracebacks, real
    warnings) through.
Set ALEXNET_FULL_LOGS=1 to get every line back (`common.quiet`, which also quiets TensorFlow's C++
start-up lines through TF_CPP_MIN_LOG_LEVEL, inherited by the worker processes).
"""

import contextlib
import logging
import os
import re
import sys
import threading

from common.quiet import full_logs

# The worker's entry module runs as __main__; pipeline_options warns about the runner's own flags.
HARNESS_OPTIONS = ['--sdk_harness_log_level_overrides={"__main__": "ERROR", '
                   '"apache_beam.options.pipeline_options": "ERROR"}']
_PRE_OPTIONS_LINES = (b"apitools not found", b"Logging handler created.",
                      b"All log messages before absl::InitializeLog() is called")
# TensorFlow's C++ lines from before its log is initialised carry a zero date: "I0000 00:00:17...".
_PRE_INIT_NATIVE_LINE = re.compile(rb"^[IWE]0000 00:00:")


def silence_import_warnings():
  """Call before importing Beam: its import-time warning then finds a (null) handler instead of
  configuring logging to print it; absl's handler takes over when the command starts."""
  if not full_logs():
    logging.getLogger().addHandler(logging.NullHandler())


def harness_options():
  """Pipeline options that quiet the workers' start-up warnings (none with full logs)."""
  return [] if full_logs() else list(HARNESS_OPTIONS)


@contextlib.contextmanager
def filtered_stderr():
  """Drops Beam's pre-options start-up lines from everything written to stderr meanwhile, by this
  process or by the worker processes it starts (they inherit the file descriptor)."""
  if full_logs():
    yield
    return
  sys.stderr.flush()
  original = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)

  def relay():
    # A buffered writer, because os.write may write only part of a long line.
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(os.dup(original), "wb") as out:
      for line in pipe:
        if not (any(text in line for text in _PRE_OPTIONS_LINES)
                or _PRE_INIT_NATIVE_LINE.match(line)):
          out.write(line)
          out.flush()

  relay_thread = threading.Thread(target=relay, name="stderr_filter", daemon=True)
  relay_thread.start()
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(original, 2)  # closes our write end; the relay ends once the workers' copies close
    relay_thread.join(timeout=10)
    os.close(original)
