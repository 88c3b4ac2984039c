"""Exact training-set statistics: the per-pixel mean image and the RGB covariance.

Sums are kept in int64, so the result does not depend on how a runner splits or orders the work and
does not drift the way float32 sums over 1.2M images do. Pixel values are 0..255; a 256x256 image adds
at most 65,536 * 255^2 ~ 4.3e9 to a cross-product sum, so int64 holds about 2e9 such images.
"""

import io

import numpy as np


class ImageStats:
  """Accumulates `count`, the per-pixel sum, and RGB sums and cross-products over uint8 images."""

  def __init__(self, image_shape):
    self.count = 0
    self.pixel_sum = np.zeros(image_shape, np.int64)
    self.rgb_sum = np.zeros(3, np.int64)
    self.rgb_outer = np.zeros((3, 3), np.int64)

  def add(self, image):
    """Adds one uint8 `[height, width, 3]` image."""
    self.count += 1
    self.pixel_sum += image
    flat = image.reshape(-1, 3)
    self.rgb_sum += flat.sum(axis=0, dtype=np.int64)
    # float64 BLAS is exact here (every partial sum is an integer below 2^53) and much faster than an
    # int64 matmul; the per-image result is converted back before it joins the int64 running sum.
    as_float = flat.astype(np.float64)
    self.rgb_outer += np.rint(as_float.T @ as_float).astype(np.int64)

  def merge(self, other):
    """Adds another accumulator's sums into this one."""
    self.count += other.count
    self.pixel_sum += other.pixel_sum
    self.rgb_sum += other.rgb_sum
    self.rgb_outer += other.rgb_outer

  def to_bytes(self):
    buffer = io.BytesIO()
    np.savez(buffer, count=np.int64(self.count), pixel_sum=self.pixel_sum, rgb_sum=self.rgb_sum,
             rgb_outer=self.rgb_outer)
    return buffer.getvalue()

  @classmethod
  def from_bytes(cls, data):
    with np.load(io.BytesIO(data)) as arrays:
      stats = cls(arrays["pixel_sum"].shape)
      stats.count = int(arrays["count"])
      stats.pixel_sum = arrays["pixel_sum"]
      stats.rgb_sum = arrays["rgb_sum"]
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
