"""The score without the images stage 1's audit found in training (`common/audit.py`).

Published audits of ILSVRC-2012 found 797 validation images that are copies of training images;
leaving such copies out moved reported accuracies by 0.7-1.0 points. The standard score keeps them,
so that it compares with published figures; the clean one leaves out the files
`Manifest.duplicated_in_training` names, to show what the contamination is worth. Pure NumPy: the
report's sections use it on cached per-image results, `per_image.evaluate_split` on its own.
"""

import numpy as np


def kept(names, duplicates, split):
  """Which scored images a clean score keeps: those whose name the audit did not find in training.

  Args:
    names: the `image/filename` of every scored image of the split, in any order.
    duplicates: the split's names that the audit found among the training images.
    split: the split scored, for the message.

  Returns:
    bool `[len(names)]`.

  Raises:
    ValueError: the audit names an image the split does not hold: `duplicates.json` and the
      shards disagree, and a score that silently left out fewer images would be mislabelled.
  """
  names = np.asarray(names, dtype=str)
  missing = sorted(frozenset(duplicates).difference(names.tolist()))
  if missing:
    raise ValueError(f"{split}: the duplicate audit names {len(missing)} image(s) this split does "
                     f"not hold, e.g. {missing[0]}; duplicates.json does not describe these "
                     "shards (rebuild the dataset)")
  return ~np.isin(names, sorted(duplicates))


def without(count):
  """How a clean score is labelled, e.g. "without the 3 images also in training"."""
  return f"without the {count:,} image{'' if count == 1 else 's'} also in training"
