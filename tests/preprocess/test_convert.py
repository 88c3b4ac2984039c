"""Tests for preprocess/conversion/convert.py: the paper's resize and crop, the stored encodings,
the fast path's quality bound, the arguments it refuses."""

import subprocess
import sys

import numpy as np
import pytest

from preprocess import errors
from preprocess.conversion import convert
from tests.preprocess import ugly_images
from tests.preprocess.pixels import SIZE
from tests.preprocess.pixels import reference_crop
from tests.preprocess.pixels import decoded
from tests.preprocess.pixels import psnr
from tests.preprocess.pixels import mean_abs_diff


def test_clean_rgb_jpeg():
  data = ugly_images.jpeg(ugly_images.photo("chelsea"))  # 451x300
  result = convert.convert_image(data)
  assert result.encoded[:2] == b"\xff\xd8"
  assert result.pixels.shape == (SIZE, SIZE, 3) and result.pixels.dtype == np.uint8
  assert (result.original_height, result.original_width) == (300, 451)
  assert result.fixes == ()
  np.testing.assert_array_equal(result.pixels, np.asarray(decoded(result.encoded)))
  assert psnr(result.pixels, reference_crop(decoded(data))) > 35  # only JPEG re-encoding loss


@pytest.mark.parametrize("encoding", convert.ENCODINGS)
def test_stored_pixels_are_left_out_when_not_asked_for(encoding, monkeypatch):
  """Splits without statistics skip decoding the stored JPEG back; the stored bytes are the same."""
  data = ugly_images.jpeg(ugly_images.photo("chelsea"))
  full = convert.convert_image(data, encoding=encoding)
  decodes = []
  real = convert._decode_stored
  monkeypatch.setattr(convert, "_decode_stored", lambda encoded: decodes.append(1) or real(encoded))
  lean = convert.convert_image(data, encoding=encoding, stored_pixels=False)
  assert lean.pixels is None and decodes == []
  assert (lean.encoded, lean.original_height, lean.fixes) == (full.encoded, 300, full.fixes)
  assert convert.convert_image(data, encoding=encoding).pixels is not None
  assert len(decodes) == (encoding == "jpeg")


@pytest.mark.parametrize(
    "size", [(300, 451), (640, 427), (512, 512), (20, 30), (1600, 120), (120, 1600), (1, 1),
             (257, 3000)], ids=[
                 "portrait", "landscape", "square", "tiny", "panorama", "tall_panorama",
                 "one_pixel", "thin"
             ])
def test_output_is_resize_shorter_side_then_centre_crop(size):
  data = ugly_images.jpeg(ugly_images.photo("rocket", size))
  result = convert.convert_image(data, encoding="raw")
  assert (result.original_width, result.original_height) == size
  expected = reference_crop(decoded(data))
  assert np.abs(result.pixels.astype(int) - expected).max() <= 1


def test_raw_encoding_round_trip():
  data = ugly_images.jpeg(ugly_images.photo("coffee"))
  raw = convert.convert_image(data, encoding="raw")
  assert len(raw.encoded) == SIZE * SIZE * 3 == 196_608
  assert raw.encoded == raw.pixels.tobytes()
  np.testing.assert_array_equal(
      np.frombuffer(raw.encoded, np.uint8).reshape(SIZE, SIZE, 3), raw.pixels)
  assert not raw.pixels.flags.writeable
  assert psnr(raw.pixels, convert.convert_image(data).pixels) > 35


def test_jpeg_encoding_is_deterministic_and_honours_quality():
  data = ugly_images.jpeg(ugly_images.photo("astronaut"))
  first, second = convert.convert_image(data), convert.convert_image(data)
  assert first.encoded == second.encoded
  low = convert.convert_image(data, quality=30)
  assert len(low.encoded) < len(first.encoded)
  assert psnr(low.pixels, first.pixels) < psnr(first.pixels,
                                               convert.convert_image(data, encoding="raw").pixels)


@pytest.mark.parametrize("size", [(2000, 1500), (4000, 3000), (1100, 1100)])
@pytest.mark.parametrize("source", ["upscaled", "detailed"])
def test_fast_path_stays_within_its_quality_bound(size, source):
  if source == "upscaled":
    image = ugly_images.photo("astronaut", size)
  else:
    image = ugly_images.detailed_photo(size)
  data = ugly_images.jpeg(image, quality=92)
  fast = convert.convert_image(data, encoding="raw").pixels
  full = convert.convert_image(data, encoding="raw", fast=False).pixels
  assert not np.array_equal(fast, full)  # the draft really took the shortcut
  assert psnr(fast, full) >= convert.FAST_PATH_MIN_PSNR_DB
  assert mean_abs_diff(fast, full) <= convert.FAST_PATH_MAX_MEAN_ABS_DIFF
  assert np.abs(full.astype(int) - reference_crop(decoded(data))).max() <= 1


@pytest.mark.parametrize("kwargs", [
    {"encoding": "png"},
    {"encoding": None},
    {"quality": 0},
    {"quality": 101},
    {"quality": 95.0},
    {"quality": True},
    {"image_size": 0},
    {"max_pixels": 0},
    {"subsampling": "4:2:2"},
    {"subsampling": None},
])
def test_bad_arguments_raise_value_error(kwargs):
  with pytest.raises(ValueError) as raised:
    convert.convert_image(ugly_images.jpeg(ugly_images.photo()), **kwargs)
  assert not isinstance(raised.value, errors.SkipImage)


def test_encoding_has_one_spelling():
  with pytest.raises(ValueError, match="unknown encoding 'RAW'"):
    convert.convert_image(ugly_images.jpeg(ugly_images.photo()), encoding="RAW")


def test_imports_neither_tensorflow_nor_beam():
  code = ("import sys, preprocess.conversion.convert; "
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'apache_beam'}))")
  output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert output.stdout.strip() == "[]"
