"""Exact statistics: independent of grouping and order, equal to a float64 NumPy reference."""

import numpy as np
import pytest

from preprocess.conversion import stats as stats_lib
from tests import helpers


def _images(count, seed=0):
  rng = np.random.default_rng(seed)
  # Correlated channels, so the covariance has a clear principal direction.
  base = rng.integers(0, 200, (count, 8, 8, 1))
  return [np.clip(b + rng.integers(0, 56, (8, 8, 3)), 0, 255).astype(np.uint8) for b in base]


def _accumulate(images):
  stats = stats_lib.ImageStats((8, 8, 3))
  for image in images:
    stats.add(image)
  return stats


def test_matches_float64_reference():
  images = _images(50)
  mean_image, stats = _accumulate(images).finalize()
  mean, covariance = helpers.float64_statistics(images)
  np.testing.assert_allclose(mean_image, mean, rtol=1e-6)
  np.testing.assert_allclose(stats["rgb_covariance"], covariance, rtol=1e-10)
  eigval, eigvec = np.array(stats["rgb_eigval"]), np.array(stats["rgb_eigvec"])
  np.testing.assert_allclose(eigval, np.sort(np.linalg.eigvalsh(covariance))[::-1], rtol=1e-10)
  np.testing.assert_allclose(covariance @ eigvec, eigvec * eigval, atol=1e-8)
  np.testing.assert_allclose(eigvec.T @ eigvec, np.eye(3), atol=1e-12)
  assert all(eigvec[np.abs(eigvec[:, j]).argmax(), j] > 0 for j in range(3))


def test_any_grouping_and_order_gives_identical_bytes():
  images = _images(30, seed=1)
  whole = _accumulate(images)
  parts = [_accumulate(images[i::4]) for i in range(4)][::-1]
  merged = parts[0]
  for part in parts[1:]:
    # merge() returns the accumulator it adds into, so `total = total.merge(part)` is safe.
    assert merged.merge(stats_lib.ImageStats.from_bytes(part.to_bytes())) is merged
  assert merged.to_bytes() == whole.to_bytes()


def test_sums_are_exact_where_float32_drifts():
  # 70,000 * 255 = 17,850,000 lies above 2^24, where float32 can no longer add 255 exactly.
  stats = stats_lib.ImageStats((1, 1, 3))
  image = np.full((1, 1, 3), 255, np.uint8)
  for _ in range(70_000):
    stats.add(image)
  assert int(stats.pixel_sum[0, 0, 0]) == 70_000 * 255
  mean_image, result = stats.finalize()
  assert mean_image[0, 0, 0] == 255 and result["rgb_covariance"][0][0] == 0


def test_finalize_without_images_is_an_error():
  with pytest.raises(ValueError, match="no training images"):
    stats_lib.ImageStats((2, 2, 3)).finalize()


def test_pending_uint32_sums_flush_into_int64(monkeypatch):
  monkeypatch.setattr(stats_lib, "_FLUSH_EVERY", 3)
  images = _images(10, seed=2)
  mean_image, _ = _accumulate(images).finalize()
  np.testing.assert_allclose(mean_image, helpers.float64_statistics(images)[0], rtol=1e-6)


def test_images_too_large_for_uint32_products_stay_exact():
  rng = np.random.default_rng(4)
  images = [np.full((300, 300, 3), 255, np.uint8), rng.integers(0, 256, (300, 300, 3), np.uint8)]
  stats = stats_lib.ImageStats((300, 300, 3))
  for image in images:
    stats.add(image)
  expected = sum(
      i.reshape(-1, 3).astype(np.int64).T @ i.reshape(-1, 3).astype(np.int64) for i in images)
  np.testing.assert_array_equal(stats.rgb_outer, expected)
