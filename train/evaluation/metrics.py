"""Pessimistic top-k accuracy: ties and NaNs count against the model.

`tf.math.in_top_k` counts an example as a hit when its label's logit ties with the k-th largest, so
a network that outputs the same logit for every class (a dead or diverged one) scores top-5 1.000
while its top-1 is 0.000. Here an example is in the top k only if fewer than k other classes score at
least as high as its label, so constant logits score 0 for every k below the number of classes.

Written with plain comparisons and sums, so it runs inside `tf.function`, under XLA and in a
distribution strategy's replica context.
"""

import tensorflow as tf


def top_k_correct(logits, labels, k):
  """Says for each example whether its label is among the k highest logits, ties counting against it.

  An example is correct if and only if all three hold:
    * its row of logits contains no NaN (a NaN anywhere makes the ranking meaningless);
    * its label's logit is finite (-inf marks a class ruled out, +inf an overflow, not a score);
    * fewer than `k` other classes have a logit greater than or equal to the label's.
  Other classes at +inf or -inf are ranked like any other value, so masking classes with -inf works.
  With `k >= num_classes` the last condition always holds: an example is correct iff its row has no
  NaN and its label's logit is finite.

  Args:
    logits: `[batch, num_classes]` real tensor (any float dtype).
    labels: `[batch]` integer tensor of 0-based class indices in `[0, num_classes)`.
    k: a Python int, at least 1.

  Returns:
    A bool tensor of shape `[batch]`.

  Raises:
    ValueError: if `k` is below 1 or the known ranks of `logits` and `labels` are not 2 and 1.
  """
  if k < 1:
    raise ValueError(f"top_k_correct: k must be at least 1, got {k}")
  logits = tf.convert_to_tensor(logits)
  labels = tf.convert_to_tensor(labels)
  if logits.shape.rank not in (2, None) or labels.shape.rank not in (1, None):
    raise ValueError(f"top_k_correct: expected logits [batch, classes] and labels [batch], got "
                     f"shapes {logits.shape} and {labels.shape}")
  label_logits = tf.gather(logits, tf.cast(labels, tf.int32), axis=1, batch_dims=1)
  # A finite label logit is >= itself, so the count includes the label once; take it back off.
  at_least_as_high = tf.cast(logits >= label_logits[:, tf.newaxis], tf.int32)
  others_at_least_as_high = tf.reduce_sum(at_least_as_high, axis=1) - 1
  row_has_nan = tf.reduce_any(tf.math.is_nan(logits), axis=1)
  return (others_at_least_as_high < k) & tf.math.is_finite(label_logits) & ~row_has_nan


def top_k_accuracy(logits, labels, k):
  """The fraction of examples `top_k_correct` counts as correct.

  Args:
    logits: `[batch, num_classes]` real tensor.
    labels: `[batch]` integer tensor of 0-based class indices.
    k: a Python int, at least 1.

  Returns:
    A float32 scalar (NaN for an empty batch).
  """
  return tf.reduce_mean(tf.cast(top_k_correct(logits, labels, k), tf.float32))


def batch_sums(per_example_loss, scores, labels):
  """What a train or eval step reports: sums of loss, top-1 hits, top-5 hits, and examples.

  Sums rather than means, so that replicas and batches add up exactly; divide by the last.

  Returns:
    float32 `[4]`.
  """
  return tf.stack([
      tf.reduce_sum(per_example_loss),
      tf.reduce_sum(tf.cast(top_k_correct(scores, labels, 1), tf.float32)),
      tf.reduce_sum(tf.cast(top_k_correct(scores, labels, 5), tf.float32)),
      tf.cast(tf.size(labels), tf.float32)
  ])
