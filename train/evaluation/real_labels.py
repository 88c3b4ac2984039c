"""ImageNet-ReaL (Beyer et al. 2020): the ILSVRC-2012 validation images scored against every label
its raters found correct.

`real.json` (google-research/reassessed-imagenet) is a list of 50,000 lists of 0-based labels in
sorted-WNID order; entry i belongs to `ILSVRC2012_val_{i+1:08d}.JPEG` (the i+1 matters: the
reference README's own snippet pairs entry i with image i). An image with an empty list (no label
the raters agreed on) is left out of both numerator and denominator. A split holding only some of
the 50,000 images (a sample) is scored on those it holds.

Top-1 means the top prediction is in the image's list, top-5 that one of the top five is; ties count
against the model, as in `train/evaluation/metrics.py` (see `top_k_correct_any`). The images are
scored by name in `per_image.evaluate_split`, in the same pass as their own labels.
"""

import hashlib
import json
import posixpath
import re

import numpy as np
import tensorflow as tf
from absl import logging

NUM_IMAGES = 50_000
NUM_CLASSES = 1000
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.[A-Za-z]+")
_WNID = re.compile(r"n\d{8}")
# SHA-256 of ILSVRC-2012's 1,000 WNIDs in sorted order, joined by newlines (the list of the devkit's
# meta.mat and of TFDS's imagenet2012 labels.txt): the classes ReaL's labels 0..999 index.
ILSVRC2012_WNIDS_SHA256 = "385e0240499426c022b773be1ae4da780f057b89c9694c7f47199f62746b6edd"
# ImageNet's own label is among an image's ReaL labels for most images; far fewer says the classes
# or the file names are not the ones ReaL numbers (checked as a warning: a refusal would need the
# real list of WNIDs, which the project does not ship).
MIN_AGREEMENT = 0.5


def top_k_correct_any(scores, label_sets, k):
  """Says for each example whether one of its labels is among the k highest scores, ties against it.

  The pessimistic rule of `metrics.top_k_correct` for a set of labels: break every tie the worst
  way for the model, classes outside the set first. An example is correct if and only if
    * its row of scores contains no NaN;
    * its best-scoring label has a finite score (a set whose labels are all -inf, or any of them
      +inf, an overflow, is wrong; so is an empty set);
    * fewer than `k` classes outside its set score at least as high as that label.
  With one label per set this is exactly `metrics.top_k_correct`.

  Args:
    scores: `[batch, num_classes]` float tensor.
    label_sets: `[batch, num_classes]` bool tensor, true for the example's labels.
    k: a Python int, at least 1.

  Returns:
    A bool tensor of shape `[batch]`.
  """
  if k < 1:
    raise ValueError(f"top_k_correct_any: k must be at least 1, got {k}")
  scores = tf.convert_to_tensor(scores)
  labels = tf.cast(label_sets, tf.bool)
  best = tf.reduce_max(tf.where(labels, scores, tf.constant(-np.inf, scores.dtype)), axis=1)
  outside = tf.logical_and(tf.logical_not(labels), scores >= best[:, tf.newaxis])
  outside_at_least_as_high = tf.reduce_sum(tf.cast(outside, tf.int32), axis=1)
  row_has_nan = tf.reduce_any(tf.math.is_nan(scores), axis=1)
  return (outside_at_least_as_high < k) & tf.math.is_finite(best) & ~row_has_nan


class RealLabels:
  """The labels of `real.json`, by 0-based validation index."""

  def __init__(self, labels, path, digest):
    self.labels = labels
    self.path = path
    self.digest = digest  # SHA-256 of the file: part of the report's cache key

  def indices(self, names, seen):
    """The 0-based validation index of each file name; `seen` (a set) catches a repeated image.

    Raises:
      ValueError: a name that is not `ILSVRC2012_val_<8 digits>.<ext>`, a number outside
        1..50,000, or an image that appears twice.
    """
    result = []
    for name in names:
      match = _VAL_NAME.fullmatch(posixpath.basename(name))
      if not match:
        raise ValueError(f"{name}: ReaL scores ILSVRC-2012 validation images, named "
                         f"ILSVRC2012_val_<8 digits>.JPEG; this split's file names are not")
      index = int(match.group(1)) - 1
      if not 0 <= index < len(self.labels):
        raise ValueError(f"{name}: number outside ReaL's 1..{len(self.labels)}")
      if index in seen:
        raise ValueError(f"{name}: ILSVRC2012_val_{index + 1:08d} appears twice in the split")
      seen.add(index)
      result.append(index)
    return np.array(result, np.int64)

  def label_sets(self, indices, num_classes):
    """bool `[n, num_classes]` of the images' ReaL labels."""
    sets = np.zeros((len(indices), num_classes), bool)
    for row, index in enumerate(indices):
      sets[row, self.labels[index]] = True
    return sets


def load(path):
  """Reads and checks `real.json`.

  Raises:
    ValueError: one line naming the file and, where it applies, the entry at fault.
  """
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      text = f.read()
    data = json.loads(text)
  except tf.errors.OpError as e:
    raise ValueError(f"--real_labels {path}: cannot read ({e.message})") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"--real_labels {path}: not JSON ({e})") from None
  if not isinstance(data, list) or len(data) != NUM_IMAGES:
    size = len(data) if isinstance(data, list) else type(data).__name__
    raise ValueError(f"--real_labels {path}: expected ReaL's list of {NUM_IMAGES:,} lists of "
                     f"labels, found {size}")
  labels = []
  for number, entry in enumerate(data, 1):
    if not isinstance(entry, list) or not all(
        isinstance(label, int) and not isinstance(label, bool) and 0 <= label < NUM_CLASSES
        for label in entry):
      raise ValueError(f"--real_labels {path}: entry {number} (ILSVRC2012_val_{number:08d}) is "
                       f"not a list of labels in 0..{NUM_CLASSES - 1}: {str(entry)[:60]}")
    labels.append(tuple(sorted(set(entry))))
  return RealLabels(labels, path, hashlib.sha256(text).hexdigest())


def check_classes(manifest):
  """Refuses a dataset whose classes are not ILSVRC-2012's 1,000 WNIDs in sorted order.

  Raises:
    ValueError: fewer or more classes, a class that is not a WNID, classes out of order, or
      1,000 WNIDs that are not ILSVRC-2012's.
  """
  synsets = manifest.synsets
  if len(synsets) != NUM_CLASSES:
    raise ValueError(f"{manifest.directory}: ReaL labels ILSVRC-2012's {NUM_CLASSES:,} classes; "
                     f"this dataset has {len(synsets)}")
  odd = [w for w in synsets if not _WNID.fullmatch(w)]
  if odd:
    raise ValueError(f"{manifest.directory}: class {odd[0]!r} is not an ILSVRC-2012 WNID; ReaL "
                     "labels its 1,000 WNIDs in sorted order")
  unsorted = next((i for i in range(1, len(synsets)) if synsets[i] <= synsets[i - 1]), None)
  if unsorted is not None:
    raise ValueError(f"{manifest.directory}: class {unsorted} ({synsets[unsorted]}) follows "
                     f"{synsets[unsorted - 1]}; ReaL's labels index ILSVRC-2012's WNIDs in "
                     "sorted order")
  if hashlib.sha256("\n".join(synsets).encode()).hexdigest() != ILSVRC2012_WNIDS_SHA256:
    raise ValueError(f"{manifest.directory}: its 1,000 WNIDs are not ILSVRC-2012's (ReaL labels "
                     "only those); was it built from another release, such as ILSVRC-2010?")


def warn_if_disagreeing(agree, labelled):
  """Warns when few images' own labels are among their ReaL labels (see `MIN_AGREEMENT`)."""
  if labelled and agree / labelled < MIN_AGREEMENT:
    logging.warning(
        "Only %d of the %d images with ReaL labels have their own label among them: "
        "are the classes ILSVRC-2012's WNIDs and the files the original "
        "ILSVRC2012_val_* images?", agree, labelled)
