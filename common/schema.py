"""The TFRecord record schema: one definition for the shard writer and every reader.

Each record is a `tf.train.Example` holding one 256x256 RGB crop. Labels are 0-based indices into the
sorted list of WNIDs (the manifest's `classes`); there is no offset anywhere.
"""

import tensorflow as tf

IMAGE_SIZE = 256
CHANNELS = 3
FORMAT_JPEG = "JPEG"
FORMAT_RAW = "RAW"
FORMATS = (FORMAT_JPEG, FORMAT_RAW)
# The build's --encoding names ("jpeg", "raw", as `preprocess.convert` spells them) and the format
# each stores in records and in the manifest's `encoding`: the only translation between the two.
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

FEATURE_SPEC = {
    ENCODED: tf.io.FixedLenFeature([], tf.string),
    FORMAT: tf.io.FixedLenFeature([], tf.string),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    WIDTH: tf.io.FixedLenFeature([], tf.int64),
    CHANNELS_KEY: tf.io.FixedLenFeature([], tf.int64),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    SYNSET: tf.io.FixedLenFeature([], tf.string),
    FILENAME: tf.io.FixedLenFeature([], tf.string),
    ORIGINAL_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    ORIGINAL_WIDTH: tf.io.FixedLenFeature([], tf.int64),
}


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


def _bytes(value):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(*, encoded, image_format, label, synset, filename, original_height,
                 original_width, height=IMAGE_SIZE, width=IMAGE_SIZE, channels=CHANNELS):
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
    raise ValueError(f"{filename}: unknown image format {image_format!r}, expected one of {FORMATS}")
  if label < 0:
    raise ValueError(f"{filename}: negative label {label}")
  if image_format == FORMAT_RAW and len(encoded) != height * width * channels:
    raise ValueError(f"{filename}: raw image has {len(encoded)} bytes, expected "
                     f"{height}x{width}x{channels}")
  feature = {
      ENCODED: _bytes(encoded),
      FORMAT: _bytes(image_format.encode()),
      HEIGHT: _int64(height),
      WIDTH: _int64(width),
      CHANNELS_KEY: _int64(channels),
      LABEL: _int64(label),
      SYNSET: _bytes(synset.encode()),
      FILENAME: _bytes(filename.encode()),
      ORIGINAL_HEIGHT: _int64(original_height),
      ORIGINAL_WIDTH: _int64(original_width),
  }
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  # `feature` is a protobuf map, whose wire order may differ between processes unless sorted.
  return example.SerializeToString(deterministic=True)


def parse_example(serialized):
  """Parses one serialized record (or a batch of them) into a dict of tensors keyed as above."""
  serialized = tf.convert_to_tensor(serialized, tf.string)
  if serialized.shape.rank == 0:
    return tf.io.parse_single_example(serialized, FEATURE_SPEC)
  return tf.io.parse_example(serialized, FEATURE_SPEC)
