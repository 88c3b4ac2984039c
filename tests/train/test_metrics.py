"""Tests for the pessimistic top-k metrics."""

import numpy as np
import pytest
import tensorflow as tf

from train.evaluation import metrics


def _correct(logits, labels, k):
  return metrics.top_k_correct(tf.constant(logits, tf.float32), tf.constant(labels), k).numpy()


def _reference_correct(logits, labels, k):
  """Loop-by-loop restatement of the definition, for finite logits."""
  return np.array(
      [np.sum(np.delete(row, label) >= row[label]) < k for row, label in zip(logits, labels)])


def test_all_equal_logits_are_never_in_the_top_k():
  logits = np.zeros([4, 10])
  labels = [0, 3, 7, 9]
  for k in (1, 5, 9):
    np.testing.assert_array_equal(_correct(logits, labels, k), [False] * 4)
    assert metrics.top_k_accuracy(logits, labels, k).numpy() == 0.0


def test_in_top_k_counts_ties_as_hits_where_we_do_not():
  logits = tf.zeros([3, 1000])
  labels = tf.constant([1, 500, 999])
  theirs = tf.reduce_mean(tf.cast(tf.math.in_top_k(labels, logits, 5), tf.float32))
  assert theirs.numpy() == 1.0
  assert metrics.top_k_accuracy(logits, labels, 5).numpy() == 0.0


def test_label_tied_at_the_boundary_is_a_miss():
  # Label 2 ties with class 3 for second place: two classes (0 and 3) score at least as high.
  logits = [[5.0, 1.0, 3.0, 3.0, 0.0]]
  assert not _correct(logits, [2], 2)[0]
  assert _correct(logits, [2], 3)[0]
  # Without the tie the label is second.
  assert _correct([[5.0, 1.0, 3.0, 2.9, 0.0]], [2], 2)[0]


def test_clear_hits_and_misses():
  logits = [[0.1, 0.9, 0.0, 0.3], [0.8, 0.1, 0.05, 0.05], [0.2, 0.3, 0.4, 0.1]]
  labels = [1, 2, 0]  # top-1; tied for third with class 3; third
  np.testing.assert_array_equal(_correct(logits, labels, 1), [True, False, False])
  np.testing.assert_array_equal(_correct(logits, labels, 3), [True, False, True])
  assert metrics.top_k_accuracy(logits, labels, 3).numpy() == pytest.approx(2 / 3)


def test_nan_anywhere_in_the_row_is_a_miss():
  nan = float("nan")
  logits = [
      [nan, 1.0, 0.0],  # NaN elsewhere, label would be top-1
      [0.0, nan, 1.0],  # NaN label logit
      [0.0, 2.0, 1.0]
  ]  # clean row, a hit
  labels = [1, 1, 1]
  for k in (1, 2, 3, 10):
    np.testing.assert_array_equal(_correct(logits, labels, k), [False, False, True])


def test_k_at_least_num_classes_needs_only_a_finite_nan_free_label():
  inf = float("inf")
  logits = [
      [0.0, 0.0, 0.0],
      [-inf, 1.0, 2.0],  # label ruled out with -inf
      [inf, 1.0, 2.0],  # overflowed label logit
      [0.0, -inf, inf]
  ]  # infinite competitors, finite label
  labels = [1, 0, 0, 0]
  for k in (3, 4):
    np.testing.assert_array_equal(_correct(logits, labels, k), [True, False, False, True])


def test_infinite_competitors_are_ranked_like_other_values():
  inf = float("inf")
  logits = [[-inf, 1.0, -inf, 0.5], [inf, 1.0, 0.0, 0.5]]
  np.testing.assert_array_equal(_correct(logits, [1, 1], 1), [True, False])
  np.testing.assert_array_equal(_correct(logits, [1, 1], 2), [True, True])


def test_matches_numpy_reference_on_random_logits_with_ties():
  rng = np.random.default_rng(0)
  # Rounding to a coarse grid makes ties common.
  logits = np.round(rng.normal(size=[256, 20]), 1).astype(np.float32)
  labels = rng.integers(0, 20, size=256)
  for k in (1, 2, 5, 19, 20):
    np.testing.assert_array_equal(_correct(logits, labels, k),
                                  _reference_correct(logits, labels, k))


def test_works_inside_tf_function_with_unknown_batch_and_bfloat16():
  accuracy = tf.function(
      lambda logits, labels: metrics.top_k_accuracy(logits, labels, 2),
      input_signature=[tf.TensorSpec([None, 4], tf.bfloat16),
                       tf.TensorSpec([None], tf.int64)])
  logits = tf.constant([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]], tf.bfloat16)
  value = accuracy(logits, tf.constant([2, 2], tf.int64))
  assert value.dtype == tf.float32
  assert value.numpy() == pytest.approx(0.5)


def test_rejects_k_below_one():
  with pytest.raises(ValueError, match="k must be at least 1"):
    metrics.top_k_correct(tf.zeros([1, 3]), tf.constant([0]), 0)
