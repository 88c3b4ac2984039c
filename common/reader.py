"""The shards' records as numpy and Python values, without TensorFlow: for PyTorch, JAX and tests.

The inverse of `schema.make_example`: `read_examples` and `read_shards` yield each record as a dict
keyed like `schema.FEATURE_TYPES` (bytes, Python ints), `decode_image` gives its pixels as
`common.image.decode_image` does, bit for bit (tests/common/test_reader.py compares them on built
shards). Files are opened as in `common.records`. Nothing here imports TensorFlow (a test checks).
"""

import io

import numpy as np
from PIL import Image

from common import example_proto
from common import records
from common import schema


def parse_example(data, where="record"):
  """Parses one record into a dict keyed like `schema.FEATURE_TYPES`: bytes, or Python ints.

  Args:
    data: the record's bytes (from `records.iter_records`).
    where: what to name in errors.

  Returns:
    {key: value}, with `schema.FEATURE_TYPES`' keys.

  Raises:
    ValueError: naming `where`, for malformed bytes or a feature missing or of another type.
  """
  return example_proto.parse_example(data, schema.FEATURE_TYPES, where)


def decode_image(example, image_format, image_size=schema.IMAGE_SIZE):
  """Decodes the image of a parsed record to uint8 RGB pixels, as `common.image.decode_image`.

  JPEG goes through Pillow, whose libjpeg-turbo uses the accurate integer IDCT by default: the
  same method as TensorFlow's `dct_method="INTEGER_ACCURATE"` that `common.image` asks for
  (`tests/common/test_reader.py` compares the two on built shards).

  Args:
    example: a dict from `parse_example`.
    image_format: the manifest's `encoding`, `schema.FORMAT_JPEG` or `schema.FORMAT_RAW`.
    image_size: side of the stored square image.

  Returns:
    A writable uint8 array of shape `[image_size, image_size, 3]` (`torch.from_numpy` takes it).

  Raises:
    ValueError: for an unknown format, or pixels that do not make that shape.
  """
  encoded = example[schema.ENCODED]
  if image_format == schema.FORMAT_JPEG:
    with Image.open(io.BytesIO(encoded)) as image:
      pixels = np.array(image.convert("RGB") if image.mode != "RGB" else image)
  elif image_format == schema.FORMAT_RAW:
    pixels = np.frombuffer(encoded, np.uint8)
    if pixels.size != image_size * image_size * schema.CHANNELS:
      raise ValueError(f"raw image of {pixels.size} bytes, expected "
                       f"{image_size}x{image_size}x{schema.CHANNELS}")
    pixels = pixels.reshape(image_size, image_size, schema.CHANNELS).copy()  # writable
  else:
    raise ValueError(f"unknown image format {image_format!r}, expected one of {schema.FORMATS}")
  if pixels.shape != (image_size, image_size, schema.CHANNELS):
    raise ValueError(f"image of shape {pixels.shape}, expected ({image_size}, {image_size}, 3)")
  return pixels


def read_examples(shard_path, index_path=None, worker=0, num_workers=1, opener=open):
  """Yields the parsed records of a shard, or of one worker's share of it.

  Args:
    shard_path: the shard.
    index_path: its index; needed when `num_workers` > 1.
    worker: this worker's number.
    num_workers: how many workers share the shard.
    opener: as for `records.iter_records`.

  Yields:
    `parse_example` dicts, in file order.

  Raises:
    ValueError: naming the file and byte offset of a bad record, or a share without an index.
  """
  start, end = 0, None
  if num_workers > 1:
    if index_path is None:
      raise ValueError(f"{shard_path}: reading a share of {num_workers} needs the index")
    start, end = records.worker_share(records.read_index(index_path, opener), worker, num_workers)
    if start == end:
      return
  for offset, data in records.iter_records(shard_path, start, end, opener):
    yield parse_example(data, f"{shard_path}: record at byte {offset}")


def read_shards(shard_paths, worker=0, num_workers=1, opener=open):
  """Yields the parsed records one of `num_workers` readers reads from a list of shards.

  With at least as many shards as workers, each worker reads whole shards, every `num_workers`-th
  from its own number on (sequential reads); with fewer, each reads its share of every shard
  through the shard's index (`records.index_name`). Either way the workers' records are disjoint and
  together every record once. This is how a PyTorch `DataLoader`'s workers split a split
  (README.md: "Using the shards elsewhere").

  Args:
    shard_paths: the shards, in the same order in every worker.
    worker: this reader's number, 0 <= worker < num_workers.
    num_workers: how many readers share the shards.
    opener: as for `records.iter_records`.

  Yields:
    `parse_example` dicts.

  Raises:
    ValueError: a worker number out of range, or a bad record (naming its file and offset).
  """
  if not 0 <= worker < num_workers:
    raise ValueError(f"worker {worker} is not in 0..{num_workers - 1}")
  if len(shard_paths) >= num_workers:
    for path in shard_paths[worker::num_workers]:
      yield from read_examples(path, opener=opener)
  else:
    for path in shard_paths:
      yield from read_examples(path, records.index_name(path), worker, num_workers, opener)
