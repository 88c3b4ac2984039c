"""Quiet commands: our own log lines and real warnings, without the libraries' chatter.

Every entry module imports it first, before anything imports TensorFlow:

    from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

On import it hides, unless `ALEXNET_FULL_LOGS=1` is set:
- TensorFlow's C++ log (`TF_CPP_MIN_LOG_LEVEL=3` unless that variable is already set). Level 2
  would still print `E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)` on every machine
  without a GPU, which a user reads as a failure; a real C++ error also reaches Python as an
  exception that carries its message.
- What TensorFlow's libraries write to stderr while they load (`I0000 ... oneDNN custom
  operations are on`, `cudart_stub.cc ... Could not find cuda drivers`), before any log setting
  reaches them: stderr is silenced for the duration of `import tensorflow`, whenever something first
  imports it. TensorFlow is not imported here: stage 1 never needs it (0.64 GiB per process).
- INFO lines that TensorFlow and Keras log through absl, which our commands log at INFO too
  (`Sharding callback duration: 22 microseconds` at every checkpoint, `... contains input name(s)
  resource with unsupported characters` and `Assets written to ...` at export). Their warnings
  and errors still show.

`ALEXNET_FULL_LOGS=1` (or any value but 0) keeps everything, for debugging TensorFlow itself.
"""

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys

# Imported before the "absl" logger is looked up below: absl makes that logger of its own class, which
# names the calling module in each line; asked for first, a plain logger would name absl's __init__.py.
from absl import logging as absl_logging

FULL_LOGS_ENV = "ALEXNET_FULL_LOGS"
LIBRARY_DIRS = tuple(f"{os.sep}{name}{os.sep}" for name in ("tensorflow", "keras", "tf_keras"))


def full_logs():
  """Whether the user asked for every library's logs (`ALEXNET_FULL_LOGS`)."""
  return os.environ.get(FULL_LOGS_ENV, "0") not in ("", "0")


def _calling_file():
  """The file of the innermost caller outside the logging modules (stdlib's and absl's)."""
  frame = sys._getframe(1)  # pylint: disable=protected-access
  while frame is not None and (frame.f_code.co_filename == __file__ or
                               f"{os.sep}logging{os.sep}" in frame.f_code.co_filename):
    frame = frame.f_back
  return frame.f_code.co_filename if frame is not None else ""


class LibraryInfoFilter(logging.Filter):
  """Drops records below WARNING that a library (TensorFlow, Keras) logs through absl.

  The caller is found on the stack: absl's records name its own `__init__.py` as their
  `pathname`, whoever logged them.
  """

  def filter(self, record):
    if record.levelno >= logging.WARNING:
      return True
    caller = _calling_file()
    return not any(directory in caller for directory in LIBRARY_DIRS)


@contextlib.contextmanager
def _stderr_silenced():
  """Points file descriptor 2 at /dev/null: C++ code writes there, not through sys.stderr."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def setup():
  """Applies the settings above, once; a no-op with `ALEXNET_FULL_LOGS=1`."""
  if full_logs():
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  # TensorFlow logs through absl and through its own "tensorflow" logger (`Assets written to`).
  for logger in (absl_logging.get_absl_logger(), logging.getLogger("tensorflow")):
    if not any(isinstance(f, LibraryInfoFilter) for f in logger.filters):
      logger.addFilter(LibraryInfoFilter())
  if "tensorflow" not in sys.modules and not any(
      isinstance(finder, _SilentTensorFlowImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _SilentTensorFlowImport())


class _SilentTensorFlowImport(importlib.abc.MetaPathFinder):
  """Silences stderr while the `tensorflow` package first loads, whoever imports it, and when.

  Importing TensorFlow here instead would be simpler, but would load it into processes that never
  use it (stage 1's launcher and Beam workers).
  """

  def find_spec(self, fullname, path, target=None):
    del path, target
    if fullname != "tensorflow":
      return None
    # Only the first import needs it; removed first, so the search below finds the real package.
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(fullname)
    if spec is not None and spec.loader is not None:
      exec_module = spec.loader.exec_module

      def silenced_exec_module(module):
        # An import error is still raised, and printed, after stderr is restored.
        with _stderr_silenced():
          exec_module(module)

      spec.loader.exec_module = silenced_exec_module
    return spec


setup()
