"""Exact training-set statistics: the per-pixel mean image and the RGB covariance.

Sums are exact integers (int64; per-pixel sums gather in uint32 between flushes), so the result does
not depend on how a runner splits or orders the work and does not drift the way float32 sums do. Pixel values are 0..255; a 256x256 image adds
at most 65,536 * 255^2 ~ 4.3e9 to a cross-product sum, so int64 holds about 2e9 such images.
"""

import io

import numpy as np

_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))

# Per-pixel sums gather in uint32 (a third of the memory traffic of int64) and move to int64 before
# 2^32 / 255 images could overflow them.
_FLUSH_EVERY = (2**32 - 1) // 255


class ImageStats:
  """Accumulates `count`, the per-pixel sum and the RGB cross-products over uint8 images.

  The RGB sums are not kept: they are the per-pixel sum added over the image's rows and columns.
  """

  def __init__(self, image_shape):
    self.count = 0
    self._pixel_sum = np.zeros(image_shape, np.int64)
    self._pending = np.zeros(image_shape, np.uint32)
    self._pending_count = 0
    self.rgb_outer = np.zeros((3, 3), np.int64)
    # One image's channel products fit uint32 up to 66,051 pixels (256x256 is 65,536).
    pixels = image_shape[0] * image_shape[1]
    self._plane_dtype = np.uint32 if pixels * 255**2 < 2**32 else np.uint64

  def add(self, image):
    """Adds one uint8 `[height, width, 3]` image."""
    self.count += 1
    np.add(self._pending, image, out=self._pending, casting="unsafe")
    self._pending_count += 1
    if self._pending_count == _FLUSH_EVERY:
      self._flush()
    # Six integer dot products of contiguous channel planes: exact, several times faster than a
    # (pixels x 3) matrix product, and free of BLAS, whose threads fight the other worker processes
    # for the cores (a float64 BLAS version ran the whole job 3x slower with two workers).
    planes = image.reshape(-1, 3).T.astype(self._plane_dtype)
    for i, j in _PAIRS:
      self.rgb_outer[i, j] += int(np.dot(planes[i], planes[j]))
    for i, j in _PAIRS[3:]:
      self.rgb_outer[j, i] = self.rgb_outer[i, j]

  def _flush(self):
    self._pixel_sum += self._pending
    self._pending[...] = 0
    self._pending_count = 0

  @property
  def pixel_sum(self):
    """int64 per-pixel sum over every image added."""
    self._flush()
    return self._pixel_sum

  @property
  def rgb_sum(self):
    return self.pixel_sum.sum(axis=(0, 1))

  def merge(self, other):
    """Adds another accumulator's sums into this one and returns this one (so merges chain)."""
    self.count += other.count
    self._flush()
    self._pixel_sum += other.pixel_sum
    self.rgb_outer += other.rgb_outer
    return self

  def subtract(self, other):
    """Takes another accumulator's images out of this one (exactly: the sums are integers) and
    returns this one: a shard's statistics without the images `--drop_duplicates` leaves out."""
    self.count -= other.count
    self._flush()
    self._pixel_sum -= other.pixel_sum
    self.rgb_outer -= other.rgb_outer
    return self

  def to_bytes(self):
    buffer = io.BytesIO()
    np.savez(buffer, count=np.int64(self.count), pixel_sum=self.pixel_sum, rgb_outer=self.rgb_outer)
    return buffer.getvalue()

  @classmethod
  def from_bytes(cls, data):
    with np.load(io.BytesIO(data)) as arrays:
      stats = cls(arrays["pixel_sum"].shape)
      stats.count = int(arrays["count"])
      stats._pixel_sum = arrays["pixel_sum"]  # pylint: disable=protected-access
      stats.rgb_outer = arrays["rgb_outer"]
    return stats

  def finalize(self):
    """The mean image and colour statistics.

    Returns:
      (mean_image float32 [h, w, 3], dict with num_images, channel_mean, rgb_covariance, rgb_eigval,
      rgb_eigvec). Eigenvalues are descending; column j of rgb_eigvec belongs to eigenvalue j, its
      sign fixed so that its largest component is positive.

    Raises:
      ValueError: if no image was added.
    """
    if self.count == 0:
      raise ValueError("no training images were written, so there is no mean or covariance")
    num_pixels = self.count * self.pixel_sum.shape[0] * self.pixel_sum.shape[1]
    mean_image = (self.pixel_sum / self.count).astype(np.float32)
    channel_mean = self.rgb_sum / num_pixels
    covariance = self.rgb_outer / num_pixels - np.outer(channel_mean, channel_mean)
    eigval, eigvec = np.linalg.eigh(covariance)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    eigvec *= np.where(eigvec[np.abs(eigvec).argmax(axis=0), range(3)] < 0, -1.0, 1.0)
    return mean_image, {
        "num_images": self.count,
        "channel_mean": channel_mean.tolist(),
        "rgb_covariance": covariance.tolist(),
        "rgb_eigval": eigval.tolist(),
        "rgb_eigvec": eigvec.tolist(),
    }
