"""Turning a parsed record into pixels: the one decode and the one mean subtraction every consumer uses.

They are two functions, not one, so that a trainer can keep uint8 pixels in its CPU input pipeline (a
quarter of the bytes of float32) and subtract the mean as the first operation on the accelerator.
"""

import tensorflow as tf

from common import schema

# libjpeg's accurate integer IDCT, the one Pillow uses when the shard writer measures the dataset's
# mean: TensorFlow's default ("" = INTEGER_FAST) gives pixels up to ~6 levels away from those. Every
# TensorFlow JPEG decode of ours (training, export, benchmarks) uses it.
DCT_METHOD = "INTEGER_ACCURATE"


def decode_image(features, image_format, crop_window=None, image_size=schema.IMAGE_SIZE):
  """Decodes the image of one parsed record to uint8 RGB pixels.

  Args:
    features: a dict from `schema.parse_example` for a single record.
    image_format: the dataset's encoding, `schema.FORMAT_JPEG` or `schema.FORMAT_RAW` (the
      manifest's `encoding`). A record in another format fails to decode.
    crop_window: optional `[offset_y, offset_x, height, width]` (int32). For JPEG records the crop
      is fused into the decode (`decode_and_crop_jpeg`), which skips the discarded blocks' IDCT.
    image_size: side of the stored square image.

  Returns:
    A uint8 tensor of shape `[height, width, 3]`.

  Raises:
    ValueError: for an unknown `image_format`.
  """
  encoded = features[schema.ENCODED]
  if image_format == schema.FORMAT_JPEG:
    if crop_window is None:
      image = tf.io.decode_jpeg(encoded, channels=schema.CHANNELS, dct_method=DCT_METHOD)
    else:
      image = tf.image.decode_and_crop_jpeg(encoded, crop_window, channels=schema.CHANNELS,
                                            dct_method=DCT_METHOD)
  elif image_format == schema.FORMAT_RAW:
    image = tf.reshape(tf.io.decode_raw(encoded, tf.uint8),
                       [image_size, image_size, schema.CHANNELS])
    if crop_window is not None:
      crop_window = tf.convert_to_tensor(crop_window, tf.int32)
      image = tf.slice(image, [crop_window[0], crop_window[1], 0],
                       [crop_window[2], crop_window[3], schema.CHANNELS])
  else:
    raise ValueError(f"unknown image format {image_format!r}, expected one of {schema.FORMATS}")
  if crop_window is None:
    image.set_shape([image_size, image_size, schema.CHANNELS])
  else:
    image.set_shape([None, None, schema.CHANNELS])
  return image


def subtract_mean(images, mean_image, offsets=None, flipped=None):
  """Subtracts the training set's per-pixel mean, as in section 2 of Krizhevsky et al. (2012).

  The mean is defined on the stored square image; a crop (and mirror) of an image is matched with the
  same crop (and mirror) of the mean. Works on one image or a batch with per-example windows, so a
  trainer can run it on the accelerator as the first operation of its step.

  Args:
    images: `[h, w, 3]` or `[batch, h, w, 3]` pixels of any real or integer dtype.
    mean_image: float32 `[size, size, 3]`, the manifest's mean image.
    offsets: int `[2]` (or `[batch, 2]`): (row, column) of each crop's top-left corner in the stored
      image. None means (0, 0).
    flipped: bool scalar (or `[batch]`): whether each crop was mirrored left-right after cropping.
      None means not mirrored.

  Returns:
    float32 pixels of the same shape as `images`, minus the matching window of the mean.
  """
  images = tf.convert_to_tensor(images)
  batched = images.shape.rank == 4
  if not batched:
    images = images[tf.newaxis]
    offsets = None if offsets is None else tf.reshape(offsets, [1, 2])
    flipped = None if flipped is None else tf.reshape(flipped, [1])
  batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
  if offsets is None:
    offsets = tf.zeros([batch, 2], tf.int32)
  offsets = tf.cast(offsets, tf.int32)
  mean_image = tf.convert_to_tensor(mean_image, tf.float32)
  rows = offsets[:, :1] + tf.range(height)[tf.newaxis]  # [batch, h]
  cols = offsets[:, 1:] + tf.range(width)[tf.newaxis]  # [batch, w]
  windows = tf.gather(mean_image, rows)  # [batch, h, size, 3]
  windows = tf.gather(windows, cols, axis=2, batch_dims=1)  # [batch, h, w, 3]
  if flipped is not None:
    windows = tf.where(tf.reshape(flipped, [-1, 1, 1, 1]), tf.reverse(windows, [2]), windows)
  centred = tf.cast(images, tf.float32) - windows
  return centred if batched else centred[0]
