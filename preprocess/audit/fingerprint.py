"""One stored image's fingerprint for the duplicate audit: an exact digest and a perceptual hash.

Pure functions of the stored image (no Beam): the shard writer fingerprints every record it writes,
and the audit (`preprocess/audit/`) compares the images whose hashes are close.

Everything is computed on a thumbnail: the 32x32 luma (ITU-R 601, as Pillow's "L") of the stored
image's 8x8 block means. The shard writer takes it from the 256x256 image just before it is encoded
(`from_image`, through `convert.convert_image(thumbnail=True)`): 0.15 ms an image, where decoding
the stored JPEG again costs 0.5 ms even at 1/8 scale, which at 0.9 ms with the hash and digest was a
quarter of a validation image's conversion. The confirmation reads the stored records back
(`thumbnail`: their pixels, or the JPEG's DC coefficients, which libjpeg's 1/8-scale decode gives as
the block means). The three differ by less than one grey level (0.91 at most on 100 Imagenette
photographs between stored pixels and DC coefficients; JPEG at quality 95 keeps block means closer
still), far inside what the hash and the confirmation allow.

Chosen by measurement on the stored crops of all 13,394 Imagenette photographs (real ILSVRC-2012
images; 2,300 of them copied five ways, each copy converted as a new file would be):
* The hash is pHash: the 8x8 lowest frequencies of the thumbnail's orthonormal DCT (DC included),
  one bit per coefficient above their median. Its Hamming distance from an image to its copy was at
  most 0 (exact copy), 6 (re-encoded at quality 70), 2 (resized by 0.8), 2 (grayscale) and 8
  (brightness x1.1 and saturation x1.05), while no two distinct photographs of a class came closer
  than 6, 19 pairs of 9.0M within 8. A difference hash (9x8) put 519 distinct pairs within 8 and
  its colour copies 22 away; an average hash had distinct pairs at 0.
* Candidates are pairs within `CANDIDATE_BITS` = 8; every pHash has 32 bits set, so distances are
  even and 8 is the colour copies' worst case.
* A candidate is a duplicate when `similarity` >= `SIMILAR`: the correlation of the two thumbnails'
  detail (each 4x4 block's mean removed). Copies scored at least 0.946 (the colour change; 0.982
  re-encoded, 0.997 resized, 0.9998 grayscale); distinct photographs whose hashes are within 8 at
  most 0.717, and the most alike distinct pair of all 9.0M 0.902 (so only ever reached by a hash
  within 8 by chance). Plain correlation of 64x64 thumbnails would not do: smooth skies make
  unrelated photographs correlate at 0.95. A crop of 2% or more escapes both (0.818): cropped
  copies are not found.
* A flat image (one colour, or nearly) has no meaningful hash (all coefficients zero): `is_flat`,
  and only its exact copies (equal digest) are found.
"""

import hashlib
import io

import numpy as np
from PIL import Image

THUMB = 32
CANDIDATE_BITS = 8
SIMILAR = 0.90
_BLOCK = 4  # detail: each 4x4 block's mean removed
_n = np.arange(THUMB)
# Rows 0..7 of the orthonormal DCT-II of length 32: the 8 lowest frequencies.
_DCT8 = np.sqrt(2 / THUMB) * np.cos(np.pi * (2 * _n[None, :] + 1) * np.arange(8)[:, None] /
                                    (2 * THUMB))
_DCT8[0] /= np.sqrt(2)


def from_image(image):
  """The 32x32 float64 luma of the 8x8 block means of a square RGB Pillow image of the stored size
  (PIL's `reduce` averages the blocks; `np.asarray` of the whole image would cost more than this)."""
  return np.asarray(image.reduce(image.size[0] // THUMB).convert("L"), np.float64)


def thumbnail(encoded=None, pixels=None):
  """The 32x32 float64 luma of a stored image's 8x8 block means, from `pixels` (uint8
  [256, 256, 3]) if given, else from the stored JPEG `encoded`."""
  if pixels is not None:
    return from_image(Image.fromarray(pixels, "RGB"))
  with Image.open(io.BytesIO(encoded)) as image:
    image.draft("L", (THUMB, THUMB))  # the DC coefficients: each 8x8 block's mean
    small = image.convert("L")
    if small.size != (THUMB, THUMB):  # not a JPEG (raw records come as pixels)
      small = small.resize((THUMB, THUMB), Image.Resampling.BOX)
    return np.asarray(small, np.float64)


def phash(thumb):
  """The 64-bit perceptual hash of a thumbnail, as an int (bits row-major, the first the MSB)."""
  # Rounded so that a flat image's coefficients are exactly zero, not the DCT's noise.
  coefficients = (_DCT8 @ thumb @ _DCT8.T).reshape(64).round(6)
  # The median of 64 values, as np.median takes it (the mean of the middle two), at a fifth of its
  # cost: the whole hash takes 17 us, not 98.
  middle = np.partition(coefficients, (31, 32))
  bits = np.packbits(coefficients > (middle[31] + middle[32]) / 2)
  return int.from_bytes(bits.tobytes(), "big")


def is_flat(hash_value):
  """Whether a hash is a flat image's (it has exactly 32 bits set otherwise)."""
  return hash_value.bit_count() != 32


def digest(encoded):
  """64 bits of the SHA-256 of the stored image's bytes: the same bytes are the same pixels, and
  hashing the ~40 KB JPEG costs a seventh of hashing its 196,608 pixel bytes."""
  return int.from_bytes(hashlib.sha256(encoded).digest()[:8], "big", signed=True)


def similarity(thumb_a, thumb_b):
  """The correlation of two thumbnails' detail (each block's mean removed), in [-1, 1]."""
  a, b = _detail(thumb_a), _detail(thumb_b)
  norm = np.sqrt(float(a @ a) * float(b @ b))
  return float(a @ b) / norm if norm > 0 else 0.0


def _detail(thumb):
  blocks = thumb.reshape(THUMB // _BLOCK, _BLOCK, THUMB // _BLOCK, _BLOCK)
  return (blocks - blocks.mean(axis=(1, 3), keepdims=True)).reshape(-1)
