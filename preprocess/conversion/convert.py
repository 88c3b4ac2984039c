"""Per-image conversion: the bytes of one source file in, one stored 256x256 RGB image out.

The conversion follows section 2 of Krizhevsky et al. (2012): rescale so the shorter side is
`image_size`, then take the central `image_size` square. It knows nothing of Beam or TensorFlow.

Dirty files are repaired by content, never by name (a file's extension is not even seen here): a
gzip-wrapped JPEG is unwrapped, PNG/GIF/BMP/WEBP/TIFF/PPM files are decoded like JPEGs, grayscale,
CMYK, palette, 16-bit and alpha images become 8-bit RGB; each repair is recorded in `fixes`. A file
that cannot become a valid image raises `errors.SkipImage` with a reason from `errors.REASONS`.

EXIF orientation is deliberately NOT applied: `tf.io.decode_jpeg` ignores it, so an exported model
fed raw JPEGs sees the stored pixel order, and training data must match. Embedded ICC profiles are
ignored for the same reason.
"""

import dataclasses
import io
import struct
import threading
import warnings
import zlib

import numpy as np
from PIL import Image, ImageFile

from preprocess import errors

ENCODINGS = ("jpeg", "raw")  # `common.schema.format_of_encoding` maps them to the record format

# Formats Pillow may parse, by its format names. A whitelist keeps exotic parsers (EPS runs
# Ghostscript, fonts, icons) away from untrusted bytes. The JPEG parser also opens MPO, the
# multi-picture JPEG some cameras write, whose first frame is a plain JPEG.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
JPEG_FORMATS = ("JPEG", "MPO")

# Repairs, named by what happened to the pixels or the bytes, never by the output encoding (a PNG
# source stored with --encoding raw is not converted to JPEG). `ConvertedImage.fixes` lists them in
# the order they are applied.
GUNZIP = "gunzip"                      # the file was a gzip-wrapped image, unwrapped
GRAYSCALE_TO_RGB = "grayscale_to_rgb"  # one channel copied to three
SIXTEEN_BIT_TO_8BIT = "16bit_to_8bit"  # 16-bit samples reduced to their high byte
BILEVEL_TO_RGB = "bilevel_to_rgb"      # 1-bit black and white
CMYK_TO_RGB = "cmyk_to_rgb"
PALETTE_TO_RGB = "palette_to_rgb"
YCBCR_TO_RGB = "ycbcr_to_rgb"
RGBX_TO_RGB = "rgbx_to_rgb"
ALPHA_REMOVED = "alpha_removed"        # composited over white
# A source in another format than JPEG was decoded: "png_source", "gif_source", ...
SOURCE_FORMAT_FIXES = {f: f"{f.lower()}_source" for f in ACCEPTED_FORMATS if f not in JPEG_FORMATS}
PNG_SOURCE = SOURCE_FORMAT_FIXES["PNG"]
FIXES = (GUNZIP, *SOURCE_FORMAT_FIXES.values(), GRAYSCALE_TO_RGB, SIXTEEN_BIT_TO_8BIT,
         BILEVEL_TO_RGB, CMYK_TO_RGB, PALETTE_TO_RGB, YCBCR_TO_RGB, RGBX_TO_RGB, ALPHA_REMOVED)

# Refuse to inflate a gzip-wrapped file past this: no real photograph is larger, and the check stops
# a small gzip bomb before it fills memory.
MAX_GUNZIP_BYTES = 64 << 20

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

_GZIP_MAGIC = b"\x1f\x8b"
_16BIT_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N")  # unsigned; Pillow's convert would clip
_WHITE = (255, 255, 255)

# Errors Pillow's parsers and decoders raise for bad bytes. MemoryError and KeyboardInterrupt are
# deliberately absent: they say nothing about the file.
_DECODE_ERRORS = (OSError, EOFError, SyntaxError, ValueError, TypeError, IndexError, KeyError,
                  ArithmeticError, struct.error)

# `warnings.catch_warnings` swaps the process-wide filter list; serialising our uses keeps two
# threads from restoring each other's filters and leaving one changed.
_WARNINGS_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ConvertedImage:
  """One converted image.

  Attributes:
    encoded: JPEG bytes, or `image_size**2 * 3` raw uint8 values in HWC order.
    pixels: read-only uint8 `[image_size, image_size, 3]`, the image as stored (for JPEG, decoded
      back from `encoded`), for the dataset's mean and colour statistics; None if not asked for.
    original_height: source height in pixels.
    original_width: source width in pixels.
    fixes: the repairs applied (names from `FIXES`), in order, e.g. ("png_source", "alpha_removed");
      empty for an RGB JPEG.
  """
  encoded: bytes
  pixels: np.ndarray
  original_height: int
  original_width: int
  fixes: tuple


def convert_image(data, *, image_size=256, encoding="jpeg", quality=95,
                  subsampling=JPEG_SUBSAMPLING, max_pixels=None, fast=True, stored_pixels=True):
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
  if data[:2] == _GZIP_MAGIC:
    data = _gunzip(data)
    fixes.append(GUNZIP)
  if not data:
    raise errors.SkipImage(errors.EMPTY, "the file has no bytes")

  image = _open(data, max_pixels)
  width, height = image.size
  if image.format not in JPEG_FORMATS:
    fixes.append(SOURCE_FORMAT_FIXES[image.format])
  draft_scale = 1
  if fast and image.format in JPEG_FORMATS:
    # Asking for a square of DRAFT_MARGIN * image_size keeps the *shorter* side at least that long:
    # Pillow picks the largest scale that fits both sides.
    draft = image.draft(None, (DRAFT_MARGIN * image_size,) * 2)
    if draft is not None:
      draft_scale = width / draft[1][2]
  _decode(image)

  image = _to_rgb_or_gray(image, fixes)
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
                        original_width=width, fixes=tuple(fixes))


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


def _gunzip(data):
  """Inflates a gzip-wrapped file, refusing to produce more than `MAX_GUNZIP_BYTES`."""
  inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
  try:
    inner = inflater.decompress(data, MAX_GUNZIP_BYTES + 1)
  except zlib.error as e:
    raise errors.SkipImage(errors.BAD_GZIP, f"gzip stream does not inflate: {e}") from None
  if len(inner) > MAX_GUNZIP_BYTES:
    raise errors.SkipImage(errors.DECOMPRESSION_BOMB,
                           f"gzip stream inflates past {MAX_GUNZIP_BYTES} bytes")
  if not inflater.eof:
    raise errors.SkipImage(errors.BAD_GZIP, "gzip stream ends before its end-of-stream marker")
  return inner


def _open(data, max_pixels):
  """Parses the header only and refuses oversized images before any pixel memory is allocated."""
  try:
    # Pillow warns between MAX_IMAGE_PIXELS and twice that; our own check below replaces the
    # warning, so silence it here rather than change a process-wide filter.
    with _WARNINGS_LOCK, warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
  except Image.UnidentifiedImageError:
    raise errors.SkipImage(errors.UNIDENTIFIED, f"not a {'/'.join(ACCEPTED_FORMATS)} image "
                           f"(starts {data[:8]!r})") from None
  except Image.DecompressionBombError as e:
    raise errors.SkipImage(errors.DECOMPRESSION_BOMB, str(e)) from None
  except _DECODE_ERRORS as e:
    raise errors.SkipImage(errors.CORRUPT, f"header unreadable: {type(e).__name__}: {e}") from None
  width, height = image.size
  if width * height > max_pixels:
    raise errors.SkipImage(errors.DECOMPRESSION_BOMB,
                           f"{width}x{height} {image.format} exceeds {max_pixels} pixels")
  if width < 1 or height < 1:
    raise errors.SkipImage(errors.CORRUPT,
                           f"{image.format} header declares a {width}x{height} image")
  return image


def _decode(image):
  """Decodes all pixels; `ImageFile.LOAD_TRUNCATED_IMAGES` stays False so short files fail."""
  if ImageFile.LOAD_TRUNCATED_IMAGES:
    raise ValueError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to keep partial images")
  try:
    image.load()
  except _DECODE_ERRORS as e:
    # Pillow says "image file is truncated ..." or "Truncated File Read" for a short file.
    reason = errors.TRUNCATED if "truncated" in str(e).lower() else errors.CORRUPT
    raise errors.SkipImage(reason,
                           f"{image.format} decode failed: {type(e).__name__}: {e}") from None


def _to_rgb_or_gray(image, fixes):
  """Returns an "RGB" or "L" image with alpha composited over white, recording each fix.

  Transparent areas become white, as a browser shows them on a page; dropping alpha instead would
  expose whatever colour the encoder left under transparent pixels (often black).
  """
  mode = image.mode
  if mode in ("RGB", "L"):
    if mode == "L":
      fixes.append(GRAYSCALE_TO_RGB)
    return image
  if mode in _16BIT_GRAY_MODES:
    fixes.append(SIXTEEN_BIT_TO_8BIT)
    fixes.append(GRAYSCALE_TO_RGB)
    return Image.fromarray((np.asarray(image) >> 8).astype(np.uint8), "L")
  if mode == "1":
    fixes.append(BILEVEL_TO_RGB)
    return image.convert("L")
  if mode == "CMYK":  # Pillow's JPEG decoder already undoes Adobe's inverted CMYK
    fixes.append(CMYK_TO_RGB)
    return image.convert("RGB")
  if mode in ("P", "PA"):
    fixes.append(PALETTE_TO_RGB)
    if mode == "P" and "transparency" not in image.info:
      return image.convert("RGB")
    image = image.convert("RGBA")
  elif mode == "LA":
    fixes.append(GRAYSCALE_TO_RGB)
    image = image.convert("RGBA")
  elif mode in ("YCbCr", "RGBX"):
    fixes.append(YCBCR_TO_RGB if mode == "YCbCr" else RGBX_TO_RGB)
    return image.convert("RGB")
  elif mode not in ("RGBA", "RGBa"):
    raise errors.SkipImage(errors.UNSUPPORTED_MODE,
                           f"{image.format} decodes to Pillow mode {mode!r}")
  fixes.append(ALPHA_REMOVED)
  if image.mode != "RGBA":
    image = image.convert("RGBA")  # also un-premultiplies "RGBa"
  background = Image.new("RGB", image.size, _WHITE)
  background.paste(image, mask=image.getchannel("A"))
  return background


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
