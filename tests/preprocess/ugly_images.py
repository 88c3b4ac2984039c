"""Builders for the clean and ugly image files that the preprocessing tests feed in.

Every file is generated in memory from scikit-image's bundled photographs or from numpy, so no data
file is committed. Other tests (the Beam pipeline's, the end-to-end one) may reuse these.
"""

import functools
import gzip
import io
import struct
import zlib

import numpy as np
import skimage.data
from PIL import Image

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")


@functools.cache
def _photo_pixels(name):
  return getattr(skimage.data, name)()[..., :3]


def photo(name="chelsea", size=None):
  """A bundled RGB photograph as a Pillow image, optionally resized to `size` (width, height)."""
  image = Image.fromarray(_photo_pixels(name))
  return image if size is None else image.resize(size, Image.Resampling.BICUBIC)


def detailed_photo(size, seed=0):
  """A `size` mosaic of full-resolution photo crops: real camera detail at every scale.

  Upscaling a small photo to camera size leaves it smooth, which flatters any downscaling shortcut;
  tiling native-resolution crops keeps the fine texture a real 12-megapixel photo has.
  """
  rng = np.random.default_rng(seed)
  canvas = Image.new("RGB", size)
  tile = 256
  for top in range(0, size[1], tile):
    for left in range(0, size[0], tile):
      source = photo(PHOTO_NAMES[rng.integers(len(PHOTO_NAMES))])
      x = rng.integers(source.width - tile + 1)
      y = rng.integers(source.height - tile + 1)
      canvas.paste(source.crop((x, y, x + tile, y + tile)), (left, top))
  return canvas


def encode(image, image_format, **options):
  """`image` saved in `image_format` ("JPEG", "PNG", "GIF", ...) as bytes."""
  buffer = io.BytesIO()
  image.save(buffer, image_format, **options)
  return buffer.getvalue()


def jpeg(image, quality=90):
  return encode(image, "JPEG", quality=quality)


def cmyk_jpeg(image):
  """A CMYK JPEG as Photoshop writes it (Pillow, like Adobe, stores inverted CMYK)."""
  return encode(image.convert("CMYK"), "JPEG", quality=95)


def png_with_alpha(image, alpha):
  """A PNG of `image` with the uint8 `alpha` array as its transparency."""
  rgba = image.convert("RGBA")
  rgba.putalpha(Image.fromarray(alpha, "L"))
  return encode(rgba, "PNG")


def gzip_wrapped(data):
  """`data` gzip-compressed, like ILSVRC-2010's n02487347_1956.JPEG."""
  return gzip.compress(data, mtime=0)


def truncated(data, fraction=0.5):
  return data[:int(len(data) * fraction)]


def corrupt_jpeg(data):
  """A JPEG whose entropy-coded scan has bytes flipped, so the decoder fails rather than warns."""
  corrupted = bytearray(data)
  scan_start = data.index(b"\xff\xda") + 20
  for offset in range(scan_start, len(data) - 2, 97):
    corrupted[offset] ^= 0xFF
  return bytes(corrupted)


def _png_chunk(kind, payload):
  return (struct.pack(">I", len(payload)) + kind + payload +
          struct.pack(">I", zlib.crc32(kind + payload)))


def png_bomb(width, height):
  """A ~60-byte PNG whose header declares `width` x `height` RGB pixels (a decompression bomb)."""
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) +
          _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def jpeg_bomb(width, height):
  """A small real JPEG whose start-of-frame is patched to declare `width` x `height` pixels."""
  data = bytearray(jpeg(Image.new("RGB", (16, 16), (10, 20, 30))))
  sof = data.index(b"\xff\xc0")
  data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
  return bytes(data)
