"""Stage 1's two errors: `BuildError`, the user's one-line failure of the build, and `SkipImage`,
one file that cannot become an image, whose reason the manifest records.

`SkipImage` lives here, below every room, because reading a file (`inputs/archives.py`: a truncated
archive member) and converting it (`conversion/decode.py`) both skip with it.
"""

# Skip reasons, in the order the checks run. The sample-data generator, the tests and the manifest's
# documentation use these names, never copies of the strings.
EMPTY = "empty"  # zero bytes (possibly after gunzip)
BAD_GZIP = "bad_gzip"  # gzip magic, but the stream does not inflate to its end
UNIDENTIFIED = "unidentified"  # not an image format we accept (HTML, random bytes, PDF)
DECOMPRESSION_BOMB = "decompression_bomb"  # header (or gzip stream) declares more than the limit
TRUNCATED = "truncated"  # the image data ends early
CORRUPT = "corrupt"  # any other failure to open or decode
UNSUPPORTED_MODE = "unsupported_mode"  # decodes to a pixel type with no 8-bit RGB meaning
UNREADABLE = "unreadable"  # the shard writer could not read the file (OSError)
REASONS = (EMPTY, BAD_GZIP, UNIDENTIFIED, DECOMPRESSION_BOMB, TRUNCATED, CORRUPT, UNSUPPORTED_MODE,
           UNREADABLE)


class BuildError(ValueError):
  """A user-facing failure of the build, with a one-line message."""


class SkipImage(ValueError):
  """The file cannot become a valid image.

  `.reason` is one of `REASONS`, a stable category for counters; str(e) is a one-line detail.
  """

  def __init__(self, reason, detail):
    if reason not in REASONS:
      raise ValueError(f"unknown skip reason {reason!r}, expected one of {REASONS}")
    detail = " ".join(str(detail).split())  # one line, whatever the underlying error said
    super().__init__(detail)
    self.reason = reason
    self.detail = detail

  def __reduce__(self):  # Beam pickles exceptions between workers; the default needs one arg
    return SkipImage, (self.reason, self.detail)
