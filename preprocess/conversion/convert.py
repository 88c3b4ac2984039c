"""Per-image conversion: the bytes of one source file in, one stored 256x256 RGB image out.

The conversion follows section 2 of Krizhevsky et al. (2012): rescale so the shorter side is
`image_size`, then take the central `image_size` square. It knows nothing of Beam or TensorFlow.

Decoding and repairing the source (gzip, formats, pixel modes, each repair recorded in `fixes`) is
`decode`'s; this module sizes, crops and encodes what it gives. A file that cannot become a valid
image raises `errors.SkipImage` with a reason from `errors.REASONS`.

EXIF orientation is deliberately NOT applied: `tf.io.decode_jpeg` ignores it, so an exported model
fed raw JPEGs sees the stored pixel order, and training data must match. Embedded ICC profiles are
ignored for the same reason.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

from preprocess.audit import fingerprint
from preprocess.conversion import decode

ENCODINGS = ("jpeg", "raw")  # `common.schema.format_of_encoding` maps them to the record format

# Bicubic with Pillow's antialiasing (the kernel widens with the shrink factor). Lanczos is a touch
# sharper but rings more and made a ~500x375 ImageNet-sized photo ~10% slower here; after the
# draft below at most ~4x is left to shrink, where the two are visually indistinguishable.
RESAMPLE = Image.Resampling.BICUBIC

# The fast path decodes large JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg's scaled IDCT) while keeping
# the shorter side at least DRAFT_MARGIN * image_size, so the resize still has real pixels to
# average. Against the reference path (full decode + one bicubic resize) photographs at 1100x1100
# to 4000x3000 measured 49-56 dB PSNR and at most 0.5 grey levels mean absolute difference
# (a margin of 1 gave 38 dB); the tests assert these bounds. It converts 2000x1500 JPEGs ~1.8x
# and 4000x3000 ones ~4x faster.
DRAFT_MARGIN = 2
FAST_PATH_MIN_PSNR_DB = 45.0
FAST_PATH_MAX_MEAN_ABS_DIFF = 1.0

# Chroma subsampling of the stored JPEG, always explicit so the stored format cannot drift with
# Pillow's or libjpeg's defaults. 4:2:0 (libjpeg's default) halves the colour resolution: on
# photographs with saturated fine detail that alone leaves the stored pixels 13-29 dB from a
# full-resolution reference, where 4:4:4 keeps every tested photograph above 33 dB, for about 30%
# more bytes (WORKSPACE.md, "JPEG or raw", has the table; benchmarks/bench_subsampling.py measures it).
JPEG_SUBSAMPLINGS = ("4:4:4", "4:2:0")
JPEG_SUBSAMPLING = "4:4:4"  # the default


@dataclasses.dataclass(frozen=True)
class ConvertedImage:
  """One converted image.

  Attributes:
    encoded: JPEG bytes, or `image_size**2 * 3` raw uint8 values in HWC order.
    pixels: read-only uint8 `[image_size, image_size, 3]`, the image as stored (for JPEG, decoded
      back from `encoded`), for the dataset's mean and colour statistics; None if not asked for.
    original_height: source height in pixels.
    original_width: source width in pixels.
    fixes: the repairs applied (names from `decode.FIXES`), in order, e.g. ("png_source",
      "alpha_removed"); empty for an RGB JPEG.
    thumbnail: the duplicate audit's 32x32 thumbnail of the image before encoding
      (`fingerprint.from_image`), or None if not asked for.
  """
  encoded: bytes
  pixels: np.ndarray
  original_height: int
  original_width: int
  fixes: tuple
  thumbnail: np.ndarray = None


def convert_image(data, *, image_size=256, encoding="jpeg", quality=95,
                  subsampling=JPEG_SUBSAMPLING, max_pixels=None, fast=True, stored_pixels=True,
                  thumbnail=False):
  """Converts one source file to a stored `image_size` square RGB image.

  Args:
    data: the file's bytes.
    image_size: side of the output square (pass `schema.IMAGE_SIZE`).
    encoding: "jpeg" or "raw", one of `ENCODINGS`.
    quality: JPEG quality, 1..100. Encoding is deterministic: equal input gives equal bytes.
    subsampling: JPEG chroma subsampling, one of `JPEG_SUBSAMPLINGS` (see `JPEG_SUBSAMPLING`).
    max_pixels: skip images whose header declares more than this many pixels, before decoding.
      Defaults to `PIL.Image.MAX_IMAGE_PIXELS` read at call time. Pillow's own hard limit of twice
      that still applies above it.
    fast: decode large JPEGs at reduced DCT scale (see `FAST_PATH_MIN_PSNR_DB`); False decodes
      at full size, the reference path.
    stored_pixels: return the stored pixels as `pixels`. Only the training split's statistics need
      them, and for JPEG they cost a decode of the stored bytes (about a seventh of the conversion),
      so the other splits pass False and get None.
    thumbnail: also return the duplicate audit's thumbnail, made from the image just before it is
      encoded: a fifth of the cost of decoding the stored JPEG again, and within a grey level of it.

  Returns:
    A `ConvertedImage`.

  Raises:
    errors.SkipImage: the bytes cannot become a valid image; `.reason` says why.
    ValueError: an argument is out of range.
  """
  _check_arguments(image_size, encoding, quality, subsampling, max_pixels)
  if max_pixels is None:
    max_pixels = Image.MAX_IMAGE_PIXELS or float("inf")
  fixes = []
  image = decode.open_image(data, max_pixels, fixes)
  width, height = image.size
  draft_scale = 1
  if fast and image.format in decode.JPEG_FORMATS:
    # Asking for a square of DRAFT_MARGIN * image_size keeps the *shorter* side at least that long:
    # Pillow picks the largest scale that fits both sides.
    draft = image.draft(None, (DRAFT_MARGIN * image_size,) * 2)
    if draft is not None:
      draft_scale = width / draft[1][2]
  decode.load(image)

  image = decode.to_rgb_or_gray(image, fixes)
  box = [side / draft_scale for side in _central_crop_box(width, height, image_size)]
  image = image.resize((image_size, image_size), RESAMPLE, box=box)
  if image.mode == "L":  # resized while one channel, which is a third of the work
    image = image.convert("RGB")

  if encoding == "raw":
    pixels = np.asarray(image)
    encoded = pixels.tobytes()
  else:
    encoded = _encode_jpeg(image, quality, subsampling)
    pixels = _decode_stored(encoded) if stored_pixels else None
  if stored_pixels:
    pixels.flags.writeable = False
  else:
    pixels = None
  return ConvertedImage(encoded=encoded, pixels=pixels, original_height=height,
                        original_width=width, fixes=tuple(fixes),
                        thumbnail=fingerprint.from_image(image) if thumbnail else None)


def _check_arguments(image_size, encoding, quality, subsampling, max_pixels):
  """Raises ValueError for an out-of-range keyword argument."""
  if not isinstance(image_size, int) or image_size < 1:
    raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
  if encoding not in ENCODINGS:
    raise ValueError(f"unknown encoding {encoding!r}, expected one of {ENCODINGS}")
  if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
    raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
  if subsampling not in JPEG_SUBSAMPLINGS:
    raise ValueError(f"unknown JPEG subsampling {subsampling!r}, expected one of "
                     f"{JPEG_SUBSAMPLINGS}")
  if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
    raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")


def _central_crop_box(width, height, image_size):
  """The source box that resizing the shorter side to `image_size` would centre-crop.

  Resizing just this box straight to `image_size` squared gives exactly the pixels of
  resize-then-crop (each output pixel sees the same source window) while never materialising the
  discarded sides, which matters for panoramas. Tiny images are upscaled the same way.
  """
  if width <= height:
    resized_width, resized_height = image_size, max(image_size, round(height * image_size / width))
  else:
    resized_width, resized_height = max(image_size, round(width * image_size / height)), image_size
  left = (resized_width - image_size) // 2
  top = (resized_height - image_size) // 2
  x_scale, y_scale = width / resized_width, height / resized_height
  return (left * x_scale, top * y_scale, (left + image_size) * x_scale,
          (top + image_size) * y_scale)


def _decode_stored(encoded):
  """The pixels a reader of the stored JPEG gets."""
  with Image.open(io.BytesIO(encoded)) as stored:
    return np.asarray(stored)


def _encode_jpeg(image, quality, subsampling):
  """Baseline JPEG with no optimize/progressive passes and no metadata: reproducible bytes."""
  buffer = io.BytesIO()
  image.save(buffer, "JPEG", quality=quality, subsampling=subsampling)
  return buffer.getvalue()
