"""Stage 1's error for the user: one line, no traceback."""


class BuildError(ValueError):
  """A user-facing failure of the build, with a one-line message."""
