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
When a job stops (a lost worker, Ctrl-C), Beam's threads and the other workers print tracebacks that
only repeat it: from the first traceback line the filter holds what it is given (`Relay`) until
the launcher knows what happened, then drops it behind one line (`preprocess/job/faults.py`) or, for
any other failure, prints it after all.
Set ALEXNET_FULL_LOGS=1 to get every line back (`common.quiet`, which also quiets TensorFlow's C++
start-up lines through TF_CPP_MIN_LOG_LEVEL, inherited by the worker processes).
"""

import collections
import contextlib
import logging
import os
import re
import sys
import threading

from absl import logging as absl_logging

from common.quiet import full_logs

# The worker's entry module runs as __main__; pipeline_options warns about the runner's own flags.
HARNESS_OPTIONS = [
    '--sdk_harness_log_level_overrides={"__main__": "ERROR", '
    '"apache_beam.options.pipeline_options": "ERROR"}'
]
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


# A traceback's first line, or a worker's shell reporting it was killed: from here on stderr is held
# until the job's fate is known (see `Relay`).
_TRACEBACK_STARTS = (
    b"Traceback (most recent call last):",
    b"Exception in thread ",
    # and what a worker's harness prints first when Ctrl-C or a lost peer ends it
    b"CRITICAL:__main__:Python sdk harness failed",
    b"Logging client failed:")
_SHELL_REPORTS = (b"Killed\n", b"Terminated\n", b"Segmentation fault\n", b"Aborted\n")
# What a held stderr keeps for a failure that turns out not to be a stop: the last lines.
_HELD_LINES = 2000


class Relay:
  """Where stderr goes while `filtered_stderr` is active: passed through, or held.

  A stopped job (a lost worker, Ctrl-C) makes Beam's threads and the other workers print tracebacks
  that only repeat that it stopped, so from the first traceback, or when told (`hold`), lines are
  held back: `discard` drops them once the stop is explained in one line, `release` prints them
  when the failure is something else, or the job went on to succeed.
  """

  def __init__(self, original):
    self.original = original
    self._lock = threading.Lock()
    self._held = None  # None: passing through; else a bounded deque of held lines
    self._discarding = False

  def hold(self):
    with self._lock:
      if self._held is None:
        self._held = collections.deque(maxlen=_HELD_LINES)

  def discard(self):
    """Drops what is held and everything written from now on."""
    with self._lock:
      self._held = collections.deque(maxlen=1)
      self._discarding = True

  def release(self):
    """Writes what is held, and passes lines through again; after `discard`, nothing changes: the
    stop was explained, and what the workers print while they are ended only repeats it."""
    with self._lock:
      if self._discarding:
        return
      held, self._held, self._discarding = self._held, None, False
    for line in held or ():
      self._write(line)

  def say(self, text):
    """Writes `text` to the terminal past the relay, whatever it is holding or dropping."""
    with self._lock:
      self._write(text.encode())

  def _write(self, data):
    while data:  # os.write may write only part of it
      data = data[os.write(self.original, data):]

  def relay(self, line, out):
    if any(text in line for text in _PRE_OPTIONS_LINES) or _PRE_INIT_NATIVE_LINE.match(line):
      return
    with self._lock:
      if self._held is None and (line.startswith(_TRACEBACK_STARTS) or line in _SHELL_REPORTS):
        self._held = collections.deque(maxlen=_HELD_LINES)
      if self._held is not None:
        if not self._discarding:
          self._held.append(line)
        return
    out.write(line)
    out.flush()


class _NoRelay:
  """What `relay()` returns when stderr is not filtered (full logs, or tests in one process)."""

  def hold(self):
    pass

  discard = release = hold

  def say(self, text):
    sys.stderr.write(text)
    sys.stderr.flush()


_active = _NoRelay()


def relay():
  """The active `Relay` (a no-op one outside `filtered_stderr` or with full logs)."""
  return _active


def log_handlers():
  """Every handler a log record of this process may reach: the root logger's and absl's."""
  return set(logging.getLogger().handlers) | {absl_logging.get_absl_handler()}


def _hold_at_beams_errors(record):
  """Beam's runner logs an error (`Error closing worker_handler`) only once a job is failing, and
  its first line is not a traceback's: hold from there too."""
  if record.levelno >= logging.ERROR and record.name.startswith("apache_beam"):
    _active.hold()
  return True


def _drop_store_chatter(record):
  """Beam's object-store modules log on the root logger: each listing at INFO (`Finished listing 507
  files in 0.19 seconds`), and a refused request as an error with its traceback before raising it,
  which `preprocess.paths` then tells in one line."""
  where = record.pathname.replace("\\", "/")
  return not any(f"apache_beam/io/{store}/" in where for store in ("aws", "gcp"))


@contextlib.contextmanager
def filtered_stderr():
  """Drops Beam's pre-options start-up lines from everything written to stderr meanwhile, by this
  process or by the worker processes it starts (they inherit the file descriptor)."""
  global _active
  if full_logs():
    yield
    return
  sys.stderr.flush()
  original = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)
  _active = Relay(original)

  def pump(relay_to):
    # A buffered writer, because os.write may write only part of a long line.
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(os.dup(original), "wb") as out:
      for line in pipe:
        relay_to.relay(line, out)

  relay_thread = threading.Thread(target=pump, args=(_active,), name="stderr_filter", daemon=True)
  relay_thread.start()
  handlers = log_handlers()
  for handler in handlers:
    handler.addFilter(_hold_at_beams_errors)
    handler.addFilter(_drop_store_chatter)
  try:
    yield
  finally:
    for handler in handlers:
      handler.removeFilter(_hold_at_beams_errors)
      handler.removeFilter(_drop_store_chatter)
    sys.stderr.flush()
    os.dup2(original, 2)  # closes our write end; the relay ends once the workers' copies close
    relay_thread.join(timeout=10)
    _active.release()
    _active = _NoRelay()
    os.close(original)
