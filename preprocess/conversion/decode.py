"""Decoding one source file and repairing it by content: bytes in, an 8-bit "RGB" or "L" Pillow
image out, or `errors.SkipImage` with a reason from `errors.REASONS`.

Dirty files are repaired by content, never by name (a file's extension is not even seen here): a
gzip-wrapped JPEG is unwrapped, PNG/GIF/BMP/WEBP/TIFF/PPM files are decoded like JPEGs, grayscale,
CMYK, palette, 16-bit and alpha images become 8-bit RGB (or L, which `convert` makes RGB after the
resize); each repair is appended to the caller's `fixes`, named from `FIXES`. Sizing and encoding
are `convert`'s; it calls `open_image`, may ask for a reduced-scale draft, then `load` and
`to_rgb_or_gray`.
"""

import io
import struct
import threading
import warnings
import zlib

import numpy as np
from PIL import Image, ImageFile

from preprocess import errors

# Formats Pillow may parse, by its format names. A whitelist keeps exotic parsers (EPS runs
# Ghostscript, fonts, icons) away from untrusted bytes. The JPEG parser also opens MPO, the
# multi-picture JPEG some cameras write, whose first frame is a plain JPEG.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
JPEG_FORMATS = ("JPEG", "MPO")

# Repairs, named by what happened to the pixels or the bytes, never by the output encoding (a PNG
# source stored with --encoding raw is not converted to JPEG). `convert.ConvertedImage.fixes` lists
# them in the order they are applied.
GUNZIP = "gunzip"  # the file was a gzip-wrapped image, unwrapped
GRAYSCALE_TO_RGB = "grayscale_to_rgb"  # one channel copied to three
SIXTEEN_BIT_TO_8BIT = "16bit_to_8bit"  # 16-bit samples reduced to their high byte
BILEVEL_TO_RGB = "bilevel_to_rgb"  # 1-bit black and white
CMYK_TO_RGB = "cmyk_to_rgb"
PALETTE_TO_RGB = "palette_to_rgb"
YCBCR_TO_RGB = "ycbcr_to_rgb"
RGBX_TO_RGB = "rgbx_to_rgb"
ALPHA_REMOVED = "alpha_removed"  # composited over white
# A source in another format than JPEG was decoded: "png_source", "gif_source", ...
SOURCE_FORMAT_FIXES = {f: f"{f.lower()}_source" for f in ACCEPTED_FORMATS if f not in JPEG_FORMATS}
PNG_SOURCE = SOURCE_FORMAT_FIXES["PNG"]
FIXES = (GUNZIP, *SOURCE_FORMAT_FIXES.values(), GRAYSCALE_TO_RGB, SIXTEEN_BIT_TO_8BIT,
         BILEVEL_TO_RGB, CMYK_TO_RGB, PALETTE_TO_RGB, YCBCR_TO_RGB, RGBX_TO_RGB, ALPHA_REMOVED)

# Refuse to inflate a gzip-wrapped file past this: no real photograph is larger, and the check stops
# a small gzip bomb before it fills memory.
MAX_GUNZIP_BYTES = 64 << 20

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


def open_image(data, max_pixels, fixes):
  """The source image with its header parsed and no pixel decoded yet (`load` decodes them).

  Unwraps a gzip-wrapped file and records `GUNZIP`, then a non-JPEG source format, in `fixes`.

  Raises:
    errors.SkipImage: empty, bad gzip, not an accepted format, more than `max_pixels`, or a bad
      header.
  """
  if data[:2] == _GZIP_MAGIC:
    data = _gunzip(data)
    fixes.append(GUNZIP)
  if not data:
    raise errors.SkipImage(errors.EMPTY, "the file has no bytes")
  image = _open(data, max_pixels)
  if image.format not in JPEG_FORMATS:
    fixes.append(SOURCE_FORMAT_FIXES[image.format])
  return image


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


def load(image):
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


def to_rgb_or_gray(image, fixes):
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
