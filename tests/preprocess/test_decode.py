"""Tests for preprocess/conversion/decode.py through convert_image: every format and mode a user's
tree may hold, the repairs, and the files that are skipped with a reason, all generated here."""

import pathlib
import pickle
import re
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from preprocess import errors
from preprocess.conversion import convert
from preprocess.conversion import decode
from tests.preprocess import ugly_images
from tests.preprocess.pixels import SIZE
from tests.preprocess.pixels import reference_crop
from tests.preprocess.pixels import decoded


def skip_reason(data, **kwargs):
  with pytest.raises(errors.SkipImage) as raised:
    convert.convert_image(data, **kwargs)
  assert str(raised.value)  # every skip carries a human detail
  assert "\n" not in str(raised.value)
  return raised.value.reason


def test_grayscale_jpeg_becomes_rgb():
  gray = ugly_images.photo("coffee").convert("L")
  result = convert.convert_image(ugly_images.jpeg(gray), encoding="raw")
  assert result.fixes == (decode.GRAYSCALE_TO_RGB,)
  np.testing.assert_array_equal(result.pixels[..., 0], result.pixels[..., 1])
  np.testing.assert_array_equal(result.pixels[..., 0], result.pixels[..., 2])
  assert np.abs(result.pixels.astype(int) -
                reference_crop(decoded(ugly_images.jpeg(gray)))).max() <= 1


def test_cmyk_jpeg_keeps_its_colours():
  patches = np.zeros((300, 300, 3), np.uint8)
  patches[:, :100] = (255, 0, 0)
  patches[:, 100:200] = (0, 255, 0)
  patches[:, 200:] = (0, 0, 255)
  result = convert.convert_image(ugly_images.cmyk_jpeg(Image.fromarray(patches)))
  assert result.fixes == (decode.CMYK_TO_RGB,)
  middle = SIZE // 2
  for column, colour in [(30, (255, 0, 0)), (middle, (0, 255, 0)), (SIZE - 30, (0, 0, 255))]:
    assert np.abs(result.pixels[middle, column].astype(int) - colour).max() < 16, column


@pytest.mark.parametrize("image_format", ["PNG", "BMP", "WEBP", "TIFF", "PPM"])
def test_other_formats_named_jpeg_are_decoded_by_content(image_format):
  image = ugly_images.photo("astronaut")
  options = {"lossless": True} if image_format == "WEBP" else {}
  result = convert.convert_image(ugly_images.encode(image, image_format, **options), encoding="raw")
  assert result.fixes == (decode.SOURCE_FORMAT_FIXES[image_format],)
  assert np.abs(result.pixels.astype(int) - reference_crop(image)).max() <= 1


def test_png_alpha_is_composited_over_white():
  image = Image.new("RGB", (400, 300), (0, 0, 0))  # black hides under the transparent half
  image.paste((200, 30, 40), (200, 0, 400, 300))
  alpha = np.zeros((300, 400), np.uint8)
  alpha[:, 200:] = 255
  result = convert.convert_image(ugly_images.png_with_alpha(image, alpha), encoding="raw")
  assert result.fixes == (decode.PNG_SOURCE, decode.ALPHA_REMOVED)
  np.testing.assert_array_equal(result.pixels[:, :60], 255)
  np.testing.assert_array_equal(result.pixels[:, -60:], np.broadcast_to((200, 30, 40),
                                                                        (SIZE, 60, 3)))


def test_palette_gif():
  image = ugly_images.photo("chelsea").convert("P", palette=Image.Palette.ADAPTIVE)
  result = convert.convert_image(ugly_images.encode(image, "GIF"), encoding="raw")
  assert result.fixes == (decode.SOURCE_FORMAT_FIXES["GIF"], decode.PALETTE_TO_RGB)
  assert np.abs(result.pixels.astype(int) - reference_crop(image.convert("RGB"))).max() <= 1


def test_transparent_gif_is_composited_over_white():
  image = Image.new("P", (100, 100), 1)
  image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
  image.paste(0, (0, 0, 50, 100))  # left half: index 0, declared transparent
  result = convert.convert_image(ugly_images.encode(image, "GIF", transparency=0), encoding="raw")
  assert result.fixes == (decode.SOURCE_FORMAT_FIXES["GIF"], decode.PALETTE_TO_RGB,
                          decode.ALPHA_REMOVED)
  np.testing.assert_array_equal(result.pixels[:, :100], 255)
  np.testing.assert_array_equal(result.pixels[:, -100:], np.broadcast_to((0, 0, 255),
                                                                         (SIZE, 100, 3)))


def test_16bit_png_is_scaled_to_8_bits():
  ramp = np.tile(np.linspace(0, 65535, 300).astype(np.uint16), (300, 1))
  result = convert.convert_image(ugly_images.encode(Image.fromarray(ramp), "PNG"), encoding="raw")
  assert result.fixes == (decode.PNG_SOURCE, decode.SIXTEEN_BIT_TO_8BIT, decode.GRAYSCALE_TO_RGB)
  expected = reference_crop(Image.fromarray((ramp >> 8).astype(np.uint8)))
  assert np.abs(result.pixels.astype(int) - expected).max() <= 1
  assert result.pixels.max() > 250  # scaled, not clipped: a clipping conversion saturates at 255


@pytest.mark.parametrize("mode, fixes", [
    ("1", (decode.PNG_SOURCE, decode.BILEVEL_TO_RGB)),
    ("LA", (decode.PNG_SOURCE, decode.GRAYSCALE_TO_RGB, decode.ALPHA_REMOVED)),
])
def test_bilevel_and_gray_alpha_pngs(mode, fixes):
  image = Image.new(mode, (300, 200), 0)
  image.paste(255 if mode == "1" else (255, 255), (150, 0, 300, 200))
  result = convert.convert_image(ugly_images.encode(image, "PNG"), encoding="raw")
  assert result.fixes == fixes
  white = np.full((SIZE, 80, 3), 255)
  np.testing.assert_array_equal(result.pixels[:, -80:], white)
  # Bilevel black stays black; transparent (alpha 0) gray-alpha black turns white.
  np.testing.assert_array_equal(result.pixels[:, :80], 0 * white if mode == "1" else white)


def test_float_tiff_is_an_unsupported_mode():
  data = ugly_images.encode(Image.new("F", (50, 50), 0.5), "TIFF")
  assert skip_reason(data) == errors.UNSUPPORTED_MODE


def test_exif_orientation_is_not_applied():
  image = ugly_images.photo("coffee")
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
  rotated_tag = ugly_images.encode(image, "JPEG", quality=90, exif=exif.tobytes())
  plain = ugly_images.encode(image, "JPEG", quality=90)
  np.testing.assert_array_equal(
      convert.convert_image(rotated_tag).pixels,
      convert.convert_image(plain).pixels)


def test_gzip_wrapped_jpeg_is_unwrapped_and_kept():
  data = ugly_images.jpeg(ugly_images.photo("astronaut"))
  unwrapped = convert.convert_image(data)
  result = convert.convert_image(ugly_images.gzip_wrapped(data))
  assert result.fixes == (decode.GUNZIP,)
  assert result.encoded == unwrapped.encoded


@pytest.mark.parametrize(
    "data, reason", [
        (b"", errors.EMPTY),
        (ugly_images.gzip_wrapped(b""), errors.EMPTY),
        (b"\x1f\x8b" + bytes(range(200)), errors.BAD_GZIP),
        (ugly_images.gzip_wrapped(ugly_images.jpeg(ugly_images.photo()))[:-300], errors.BAD_GZIP),
        (b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>",
         errors.UNIDENTIFIED),
        (np.random.default_rng(0).bytes(5000), errors.UNIDENTIFIED),
        (ugly_images.gzip_wrapped(b"<html>moved</html>"), errors.UNIDENTIFIED),
        (ugly_images.truncated(ugly_images.jpeg(ugly_images.photo())), errors.TRUNCATED),
        (ugly_images.truncated(ugly_images.encode(ugly_images.photo(), "PNG")), errors.TRUNCATED),
        (ugly_images.corrupt_jpeg(ugly_images.jpeg(ugly_images.photo())), errors.CORRUPT),
    ], ids=[
        "empty", "empty_gzip", "gzip_of_garbage", "cut_gzip", "html", "random_bytes", "gzip_html",
        "truncated_jpeg", "truncated_png", "corrupt_jpeg"
    ])
def test_unusable_files_are_skipped_with_a_reason(data, reason):
  assert skip_reason(data) == reason


def test_gzip_is_inflated_only_up_to_the_limit(monkeypatch):
  inner = ugly_images.jpeg(ugly_images.photo())
  wrapped = ugly_images.gzip_wrapped(inner)
  monkeypatch.setattr(decode, "MAX_GUNZIP_BYTES", len(inner))
  assert convert.convert_image(wrapped).fixes == (decode.GUNZIP,)
  monkeypatch.setattr(decode, "MAX_GUNZIP_BYTES", len(inner) - 1)
  assert skip_reason(wrapped) == errors.DECOMPRESSION_BOMB
  monkeypatch.setattr(decode, "MAX_GUNZIP_BYTES", 1 << 20)
  assert skip_reason(ugly_images.gzip_wrapped(bytes(16 << 20))) == errors.DECOMPRESSION_BOMB


@pytest.mark.parametrize(
    "data",
    [
        ugly_images.png_bomb(100_000, 100_000),  # past Pillow's hard limit: it raises
        ugly_images.png_bomb(10_000, 10_000),  # between Pillow's limit and twice it: it only warns
        ugly_images.jpeg_bomb(30_000, 30_000),
    ],
    ids=["png_huge", "png_warning_zone", "jpeg_sof"])
def test_decompression_bombs_are_refused_from_the_header(data):
  filters_before = list(warnings.filters)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    start = time.perf_counter()
    assert skip_reason(data) == errors.DECOMPRESSION_BOMB
    # Decoding would allocate 0.3-30 GB and take seconds; refusing from the header takes ~1 ms.
    assert time.perf_counter() - start < 0.5
  assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
  assert warnings.filters == filters_before


def test_max_pixels_limits_and_threads_leave_warning_filters_alone():
  data = ugly_images.jpeg(ugly_images.photo("chelsea"))  # 451 * 300 = 135,300 pixels
  assert skip_reason(data, max_pixels=135_299) == errors.DECOMPRESSION_BOMB
  assert convert.convert_image(data, max_pixels=135_300).original_width == 451
  filters_before = list(warnings.filters)
  bomb = ugly_images.png_bomb(10_000, 10_000)
  reasons = []

  def convert_many():
    for _ in range(50):
      try:
        convert.convert_image(bomb)
      except errors.SkipImage as e:
        reasons.append(e.reason)

  threads = [threading.Thread(target=convert_many) for _ in range(4)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert reasons == [errors.DECOMPRESSION_BOMB] * 200
  assert warnings.filters == filters_before
  assert Image.MAX_IMAGE_PIXELS == 89_478_485


def test_refuses_to_run_with_load_truncated_images(monkeypatch):
  monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
  with pytest.raises(ValueError, match="LOAD_TRUNCATED_IMAGES"):
    convert.convert_image(ugly_images.truncated(ugly_images.jpeg(ugly_images.photo())))


def test_skip_image_pickles_and_checks_its_reason():
  error = pickle.loads(pickle.dumps(errors.SkipImage(errors.TRUNCATED, "cut at byte 10")))
  assert (error.reason, str(error)) == (errors.TRUNCATED, "cut at byte 10")
  with pytest.raises(ValueError, match="unknown skip reason"):
    errors.SkipImage("sad", "no such reason")


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_mutated_files_only_ever_convert_or_skip(image_format):
  clean = ugly_images.encode(ugly_images.photo("chelsea", (64, 48)), image_format)
  rng = np.random.default_rng(len(image_format))
  for _ in range(60):
    data = bytearray(clean)
    for offset in rng.integers(0, len(data), size=rng.integers(1, 8)):
      data[offset] = rng.integers(256)
    data = bytes(data[:rng.integers(len(data) // 2, len(data) + 1)])
    try:
      result = convert.convert_image(data)
    except errors.SkipImage as e:
      assert e.reason in errors.REASONS
    else:
      assert result.pixels.shape == (SIZE, SIZE, 3)


def test_repairs_are_named_by_what_happened_to_the_pixels_not_the_output_encoding():
  png = ugly_images.encode(ugly_images.photo("coffee"), "PNG")
  assert convert.convert_image(png, encoding="raw").fixes == ("png_source",)
  assert convert.convert_image(png, encoding="jpeg").fixes == ("png_source",)
  assert not [fix for fix in decode.FIXES if "jpeg" in fix or "raw" in fix]
  assert len(set(decode.FIXES)) == len(decode.FIXES)


def test_workspace_lists_every_repair_and_skip_reason():
  text = (pathlib.Path(__file__).resolve().parents[2] / "WORKSPACE.md").read_text()
  section = text[text.index("### What happens to each image"):text.index("### Re-runs")]
  named = set(re.findall(r"`([a-z0-9_]+)`", section))
  assert set(decode.FIXES) <= named and set(errors.REASONS) <= named
