"""Paths on any filesystem Beam knows: a "/"-separated relative path joined under a base.

Below every room: the input's listings, the shard writer and the output folder all name files this
way, so that `--input_dir` and `--output_dir` may be local, gs://, s3://, ...
"""

from apache_beam.io.filesystems import FileSystems


def join(base, relative):
  return FileSystems.join(base, *relative.split("/")) if relative else base
