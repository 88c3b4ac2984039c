"""The record schema round-trips, and the shared decode and mean subtraction agree with NumPy."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import image as image_lib
from common import schema
from preprocess.conversion import convert


def _pixels(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)


def _jpeg(pixels):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
  return buffer.getvalue()


@pytest.mark.parametrize("image_format", schema.FORMATS)
def test_make_and_parse_round_trip(image_format):
  pixels = _pixels()
  encoded = _jpeg(pixels) if image_format == schema.FORMAT_JPEG else pixels.tobytes()
  serialized = schema.make_example(encoded=encoded, image_format=image_format, label=7,
                                   synset="n01440764", filename="train/n01440764/a.JPEG",
                                   original_height=375, original_width=500)
  features = {k: v.numpy() for k, v in schema.parse_example(serialized).items()}
  assert features == {
      schema.ENCODED: encoded, schema.FORMAT: image_format.encode(), schema.HEIGHT: 256,
      schema.WIDTH: 256, schema.CHANNELS_KEY: 3, schema.LABEL: 7, schema.SYNSET: b"n01440764",
      schema.FILENAME: b"train/n01440764/a.JPEG", schema.ORIGINAL_HEIGHT: 375,
      schema.ORIGINAL_WIDTH: 500
  }
  batch = schema.parse_example(tf.constant([serialized, serialized]))
  assert batch[schema.LABEL].numpy().tolist() == [7, 7]


def test_serialization_is_deterministic():
  kwargs = dict(encoded=b"x" * 196608, image_format=schema.FORMAT_RAW, label=0, synset="n0",
                filename="f", original_height=1, original_width=1)
  assert schema.make_example(**kwargs) == schema.make_example(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_format="PNG"), "unknown image format"),
    (dict(label=-1), "negative label"),
    (dict(image_format=schema.FORMAT_RAW, encoded=b"123"), "raw image has 3 bytes"),
])
def test_make_example_rejects_bad_records(kwargs, message):
  args = dict(encoded=b"jpeg", image_format=schema.FORMAT_JPEG, label=0, synset="n0",
              filename="train/x.JPEG", original_height=1, original_width=1)
  with pytest.raises(ValueError, match=message):
    schema.make_example(**{**args, **kwargs})


@pytest.mark.parametrize("image_format", schema.FORMATS)
def test_decode_with_crop_equals_slicing_the_full_decode(image_format):
  pixels = _pixels(1)
  encoded = _jpeg(pixels) if image_format == schema.FORMAT_JPEG else pixels.tobytes()
  features = schema.parse_example(
      schema.make_example(encoded=encoded, image_format=image_format, label=0, synset="n0",
                          filename="f", original_height=256, original_width=256))
  full = image_lib.decode_image(features, image_format).numpy()
  if image_format == schema.FORMAT_RAW:
    np.testing.assert_array_equal(full, pixels)
  window = tf.constant([10, 20, 227, 227])
  eager = image_lib.decode_image(features, image_format, window).numpy()
  np.testing.assert_array_equal(eager, full[10:237, 20:247])
  in_graph = tf.function(lambda f: image_lib.decode_image(f, image_format, window))(features)
  np.testing.assert_array_equal(in_graph.numpy(), eager)


def test_decode_matches_pillow_exactly():
  encoded = _jpeg(_pixels(2))
  features = {schema.ENCODED: tf.constant(encoded)}
  decoded = image_lib.decode_image(features, schema.FORMAT_JPEG).numpy()
  np.testing.assert_array_equal(decoded, np.asarray(Image.open(io.BytesIO(encoded))))


def test_decode_rejects_an_unknown_format():
  with pytest.raises(ValueError, match="unknown image format"):
    image_lib.decode_image({schema.ENCODED: tf.constant(b"")}, "PNG")


def test_subtract_mean_matches_numpy_per_example_windows_and_mirrors():
  rng = np.random.default_rng(3)
  mean = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
  images = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
  offsets = np.array([[0, 0], [11, 9], [4, 2]])
  flipped = np.array([False, True, True])
  got = image_lib.subtract_mean(images, mean, offsets, flipped).numpy()
  for i, ((y, x), flip) in enumerate(zip(offsets, flipped)):
    window = mean[y:y + 5, x:x + 7]
    expected = images[i] - (window[:, ::-1] if flip else window)
    np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-4)
  single = image_lib.subtract_mean(images[1], mean, offsets[1], flipped[1]).numpy()
  np.testing.assert_allclose(single, got[1])
  np.testing.assert_allclose(
      image_lib.subtract_mean(images[0], mean).numpy(), images[0] - mean[:5, :7], atol=1e-4)


def test_each_build_encoding_maps_to_one_record_format():
  assert [schema.format_of_encoding(e) for e in convert.ENCODINGS] == list(schema.FORMATS)
  with pytest.raises(ValueError, match="unknown encoding 'JPEG'"):
    schema.format_of_encoding(schema.FORMAT_JPEG)
