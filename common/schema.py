"""The TFRecord record schema: one definition for the shard writer and every reader.

Each record is a `tf.train.Example` holding one 256x256 RGB crop. Labels are 0-based indices into the
sorted list of WNIDs (the manifest's `classes`); there is no offset anywhere.

The writing side has no TensorFlow: `make_example` encodes the Example's protobuf wire format itself
(`common/example_proto.py`), so stage 1's Beam workers never import it (0.64 GiB and ~1 s of start-up
each). The reading side imports TensorFlow inside its functions, which only run in processes that
already hold it (the trainer, tests); a module-level import would undo the saving for the writers.
"""

from common import example_proto

IMAGE_SIZE = 256
CHANNELS = 3
FORMAT_JPEG = "JPEG"
FORMAT_RAW = "RAW"
FORMATS = (FORMAT_JPEG, FORMAT_RAW)
# The build's --encoding names ("jpeg", "raw", as `preprocess.conversion.convert` spells them) and
# the format each stores in records and in the manifest's `encoding`: the only translation between
# the two.
_FORMAT_OF_ENCODING = {"jpeg": FORMAT_JPEG, "raw": FORMAT_RAW}

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS_KEY = "image/channels"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
FILENAME = "image/filename"
ORIGINAL_HEIGHT = "image/original/height"
ORIGINAL_WIDTH = "image/original/width"

# Every key's type: the one table that drives both `make_example` and `feature_spec`.
FEATURE_TYPES = {
    ENCODED: bytes,
    FORMAT: bytes,
    HEIGHT: int,
    WIDTH: int,
    CHANNELS_KEY: int,
    LABEL: int,
    SYNSET: bytes,
    FILENAME: bytes,
    ORIGINAL_HEIGHT: int,
    ORIGINAL_WIDTH: int,
}


def feature_spec():
  """The parse spec for `tf.io.parse_example`, built from `FEATURE_TYPES`.

  Returns:
    A dict from each feature key to a scalar `tf.io.FixedLenFeature` (`tf.string` or `tf.int64`).
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (readers only; see the docstring)
  dtypes = {bytes: tf.string, int: tf.int64}
  return {key: tf.io.FixedLenFeature([], dtypes[kind]) for key, kind in FEATURE_TYPES.items()}


def format_of_encoding(encoding):
  """The record format stored for a build's encoding.

  Args:
    encoding: "jpeg" or "raw" (the `--encoding` flag of `preprocess.build_shards`).

  Returns:
    `FORMAT_JPEG` or `FORMAT_RAW`, as written in `image/format` and the manifest's `encoding`.

  Raises:
    ValueError: for any other encoding.
  """
  if encoding not in _FORMAT_OF_ENCODING:
    raise ValueError(f"unknown encoding {encoding!r}, expected one of {tuple(_FORMAT_OF_ENCODING)}")
  return _FORMAT_OF_ENCODING[encoding]


def make_example(*, encoded, image_format, label, synset, filename, original_height, original_width,
                 height=IMAGE_SIZE, width=IMAGE_SIZE, channels=CHANNELS):
  """Serializes one image record.

  Args:
    encoded: the image bytes: a JPEG file, or `height * width * channels` uint8 values in HWC order.
    image_format: `FORMAT_JPEG` or `FORMAT_RAW`.
    label: 0-based class index in sorted WNID order.
    synset: the class WNID, e.g. "n01440764".
    filename: the source path relative to the input directory, with "/" separators.
    original_height: height of the source image before resizing.
    original_width: width of the source image before resizing.
    height: stored image height.
    width: stored image width.
    channels: stored channel count.

  Returns:
    The serialized `tf.train.Example` as bytes.

  Raises:
    ValueError: if the format is unknown, the label negative, or raw bytes have the wrong length.
  """
  if image_format not in FORMATS:
    raise ValueError(
        f"{filename}: unknown image format {image_format!r}, expected one of {FORMATS}")
  if label < 0:
    raise ValueError(f"{filename}: negative label {label}")
  if image_format == FORMAT_RAW and len(encoded) != height * width * channels:
    raise ValueError(f"{filename}: raw image has {len(encoded)} bytes, expected "
                     f"{height}x{width}x{channels}")
  return example_proto.serialize_example(
      {
          ENCODED: encoded,
          FORMAT: image_format.encode(),
          HEIGHT: height,
          WIDTH: width,
          CHANNELS_KEY: channels,
          LABEL: label,
          SYNSET: synset.encode(),
          FILENAME: filename.encode(),
          ORIGINAL_HEIGHT: original_height,
          ORIGINAL_WIDTH: original_width,
      }, FEATURE_TYPES)


def parse_example(serialized):
  """Parses one serialized record (or a batch of them) into a dict of tensors keyed as above.

  Args:
    serialized: one serialized record (a scalar string) or a vector of them.

  Returns:
    A dict from each feature key to a tensor: scalars for one record, vectors for a batch.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (readers only; see the docstring)
  serialized = tf.convert_to_tensor(serialized, tf.string)
  spec = feature_spec()
  if serialized.shape.rank == 0:
    return tf.io.parse_single_example(serialized, spec)
  return tf.io.parse_example(serialized, spec)
