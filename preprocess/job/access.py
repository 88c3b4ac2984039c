"""Before anything is written: the input can be listed and the output written, or one line says why.

On an object store a missing bucket, keys that may not read or write, or no credentials at all would
otherwise surface deep in planning, or in every worker as a traceback; here they are the first
thing a build finds out, in the launcher, naming the flag.
"""

from preprocess import paths
from preprocess import stores
from preprocess.errors import BuildError

_PROBE_NAME = ".build_write_check"


def check_input(flag, path):
  """Raises `BuildError` unless `path` (a folder or prefix) can be listed and holds files."""
  try:
    if not paths.has_files(path):
      if not stores.scheme(path) and not paths.exists(path):
        raise BuildError(f"--{flag} {path}: {_missing(path)}")
      raise BuildError(f"--{flag} {path}: holds no files (is it the folder the release was "
                       "downloaded into?)")
  except paths.Missing:
    raise BuildError(f"--{flag} {path}: {_missing(path)}") from None
  except OSError as e:
    raise BuildError(f"--{flag} {e}") from None


def check_output(flag, path):
  """Raises `BuildError` unless a file can be written under `path` on a remote filesystem.

  A local folder needs no probe: the launcher's own first write fails there, in one line. On a
  store the first writes are the workers', so a small file is written and deleted here first.
  """
  if not stores.scheme(path):
    return
  probe = paths.join(path, _PROBE_NAME)
  try:
    with paths.create(probe) as f:
      f.write(b"ok")
    paths.delete([probe])
  except paths.Missing:
    raise BuildError(f"--{flag} {path}: {_missing(path)}") from None
  except OSError as e:
    raise BuildError(f"--{flag} {e}") from None


def _missing(path):
  if stores.scheme(path) in stores.RANGED:  # a prefix is never missing: its bucket is
    return f"the bucket {path.split('/')[2]} does not exist"
  return "no such folder"
