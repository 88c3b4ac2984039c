"""A stopped job in one line: a lost worker process, Ctrl-C, SIGTERM or a full disk, never Beam's
tracebacks.

Beam's local runner starts each worker as `sh -c "python -m ...sdk_worker_main"` with a thread
that waits for it and raises `RuntimeError("Worker subprocess exited with return code N")` when it
dies. The runner's other threads then fail on the closed channels, each printing a traceback, and
the pipeline ends in `RuntimeError("Channel closed prematurely.")`; the FnApi runner never retries
a bundle. Ctrl-C reaches the launcher and every local worker (one process group), and each worker
prints its own `KeyboardInterrupt`. `watch` turns all of that into one `Stopped` error that says
what happened, how many shards are complete and kept, and that rerunning the same command resumes
(`preprocess/conversion/resume.py`); `beam_logs` holds the tracebacks back meanwhile. Any other
failure is re-raised with what was held printed after all.

The runner most often stops within a second of a lost worker, but nothing in it promises that (a
worker killed while the other waits on its input has left it waiting past a minute), so a watchdog
bounds the wait (`LOST_WORKER_GRACE_SECONDS`) and then stops the job itself, its line the only one:
the main thread, still inside the runner, would otherwise log the runner's tracebacks and a second
line of its own.
"""

import contextlib
import logging as std_logging
import os
import re
import signal
import sys
import threading

import psutil
from absl import logging

from preprocess.job import beam_logs

LOST_WORKER_GRACE_SECONDS = 60.0
_EXIT_STATUS = re.compile(r"Worker subprocess exited with return code (-?\d+)")
# What the runner raises once a worker's channels are gone, whatever killed it.
_LOST_CHANNEL = ("Channel closed prematurely", "Socket closed",
                 "failed to connect to all addresses", "Connection reset by peer")
# A worker's OSError as the runner relays it: a full disk or quota stops every shard alike.
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded")
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stopped(Exception):
  """The job stopped before it finished; the message is one line, `exit_code` the process's."""

  def __init__(self, message, exit_code):
    super().__init__(message)
    self.exit_code = exit_code


def describe_exit(code):
  """A worker's exit status in words: a shell's 128 + N and Popen's -N both mean signal N."""
  number = -code if code < 0 else code - 128 if code > 128 else None
  if number == signal.SIGKILL:
    return (
        f"killed by SIGKILL (exit status {code}), most often the kernel's out-of-memory killer: "
        "see dmesg, and try fewer workers (--direct_num_workers)")
  if number:
    try:
      name = signal.Signals(number).name
    except ValueError:
      name = f"signal {number}"
    return f"killed by {name} (exit status {code})"
  return f"exit status {code}"


class _Watch:
  """What `watch` saw: worker exit statuses, the signal that stopped the job."""

  def __init__(self, kept_so_far, grace_seconds):
    self.exit_codes = []
    self.signal = None
    self._kept_so_far = kept_so_far
    self._grace = grace_seconds
    self._finished = threading.Event()
    self._watchdog = None

  def on_thread_exception(self, args, previous_hook):
    beam_logs.relay().hold()
    match = _EXIT_STATUS.search(str(args.exc_value))
    if match:
      self.exit_codes.append(int(match.group(1)))
      if self._watchdog is None:
        self._watchdog = threading.Thread(target=self._bound_the_wait, name="lost_worker_watchdog",
                                          daemon=True)
        self._watchdog.start()
    previous_hook(args)  # into the held stderr, printed only if this turns out not to be a stop

  def on_signal(self, signum, _):
    beam_logs.relay().hold()
    self.signal = signum
    raise KeyboardInterrupt

  def lost_worker_message(self):
    how = (describe_exit(self.exit_codes[0])
           if self.exit_codes else "its channel to the launcher closed")
    return (f"a worker process of the job died, {how}; {self._kept_so_far()}; rerun the same "
            "command to resume")

  def _bound_the_wait(self):
    if self._finished.wait(self._grace):
      return
    # The job ends here: what any thread or worker writes from now on only repeats it, so stderr
    # stays dropped and our line goes straight to the terminal.
    threading.excepthook = lambda args: None
    beam_logs.relay().discard()
    beam_logs.relay().say(
        _error_line(
            f"{self.lost_worker_message()} (the runner had not stopped {self._grace:.0f} s after "
            "losing it, so the job was stopped)"))
    exit_now(1)

  def finish(self):
    self._finished.set()


@contextlib.contextmanager
def watch(kept_so_far, grace_seconds=LOST_WORKER_GRACE_SECONDS):
  """Runs the pipeline's block; a lost worker, Ctrl-C or SIGTERM in it raises `Stopped`.

  Args:
    kept_so_far: a callable giving the words for what is kept, e.g. "5 of 8 shards are complete
      and kept in DIR"; called after the stop.
    grace_seconds: how long the runner may take to stop after losing a worker.

  Raises:
    Stopped: one line for the user, and the exit code (1, or 130 for Ctrl-C, 143 for SIGTERM).
  """
  state = _Watch(kept_so_far, grace_seconds)
  previous_hook = threading.excepthook
  threading.excepthook = lambda args: state.on_thread_exception(args, previous_hook)
  main_thread = threading.current_thread() is threading.main_thread()
  previous_handlers = ({s: signal.signal(s, state.on_signal) for s in EXIT_CODES}
                       if main_thread else {})
  try:
    yield state
  except KeyboardInterrupt:
    signum = state.signal or signal.SIGINT
    beam_logs.relay().discard()
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    raise Stopped(f"stopped by {name}: {kept_so_far()}; rerun the same command to resume",
                  EXIT_CODES[signum]) from None
  except Exception as e:  # pylint: disable=broad-except  (sorted below, re-raised if not a stop)
    if state.exit_codes or any(text in str(e) for text in _LOST_CHANNEL):
      beam_logs.relay().discard()
      raise Stopped(state.lost_worker_message(), 1) from None
    full = _DISK_FULL.search(str(e))
    if full:
      beam_logs.relay().discard()
      raise Stopped(
          f"the job could not write ({full.group(0)}); {kept_so_far()}; free some space "
          "and rerun the same command to resume", 1) from None
    beam_logs.relay().release()
    raise
  finally:
    state.finish()
    threading.excepthook = previous_hook
    for signum, handler in previous_handlers.items():
      signal.signal(signum, handler)
  beam_logs.relay().release()


def _error_line(message):
  """`message` as absl would log it from the caller, as text."""
  caller = sys._getframe(1)  # pylint: disable=protected-access
  record = std_logging.LogRecord("absl", std_logging.ERROR, caller.f_code.co_filename,
                                 caller.f_lineno, message, None, None)
  return logging.get_absl_handler().format(record) + "\n"


def exit_now(code):
  """Ends the process at once with `code`, after our own log lines and the worker processes.

  Beam's runner threads are not daemons and may wait on a dead worker's channel forever, so a
  stopped job does not wait for them; its local workers are ended rather than left orphaned.
  """
  for handler in beam_logs.log_handlers():
    handler.flush()
  sys.stderr.flush()
  # Our line is out. While the workers are ended, Beam's runner threads find their channels closed
  # and log tracebacks that only repeat it (`Error closing worker_handler`): nothing logs now.
  std_logging.disable(std_logging.CRITICAL)
  children = psutil.Process().children(recursive=True)
  for child in children:
    with contextlib.suppress(psutil.Error):
      child.terminate()
  _, alive = psutil.wait_procs(children, timeout=5)
  for child in alive:
    with contextlib.suppress(psutil.Error):
      child.kill()
  os._exit(code)  # pylint: disable=protected-access
