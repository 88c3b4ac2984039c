"""ImageNetV2 (Recht et al. 2019) as the two stages see it: its variants and how a manifest names one.

ImageNetV2 is three test sets of 10,000 images for ILSVRC-2012's 1,000 classes, released as
`imagenetv2-<variant>-format-val/<n>/<sha1>.jpeg`, where `<n>` is the class's position in the sorted
WNIDs. Stage 1 builds an evaluation-only dataset from one of them
(`preprocess/inputs/imagenetv2.py`); the report needs to know which variant it scores. That is recorded in the split's `input` in
`manifest.json`, written by `input_form` and read by `variant_of`, here and nowhere else.
"""

# Variant name -> the name ImageNetV2's paper and imagenet-testbed give it.
VARIANTS = {
    "matched-frequency": "MatchedFrequency",
    "threshold0.7": "Threshold0.7",
    "top-images": "TopImages",
}
# Images in each variant as released: 10 for each of the 1,000 classes.
NUM_IMAGES = 10_000
# The split an ImageNetV2 dataset holds: it is a test set, as TFDS's `imagenet_v2` calls it.
SPLIT = "test"
_PREFIX = "imagenetv2"


def folder_name(variant):
  """The released folder of a variant, e.g. `imagenetv2-matched-frequency-format-val`."""
  return f"{_PREFIX}-{variant}-format-val"


def variant_of_folder(name):
  """The variant whose released folder is called `name`, or None.

  Args:
    name: a folder's base name.

  Returns:
    A key of `VARIANTS`, or None.
  """
  return next((variant for variant in VARIANTS if folder_name(variant) == name), None)


def input_form(variant, form, where):
  """The split's `input` in the manifest for an ImageNetV2 source.

  Args:
    variant: a key of `VARIANTS`.
    form: "folder" or "tar".
    where: the folder or the tar read.

  Returns:
    e.g. "imagenetv2 matched-frequency folder /data/imagenetv2-matched-frequency-format-val".

  Raises:
    ValueError: for an unknown variant.
  """
  if variant not in VARIANTS:
    raise ValueError(f"unknown ImageNetV2 variant {variant!r}, expected one of {list(VARIANTS)}")
  return f"{_PREFIX} {variant} {form} {where}"


def variant_of(manifest_data):
  """Which ImageNetV2 variant a dataset holds, from its split's `input`; None if it is not one.

  Args:
    manifest_data: the parsed `manifest.json`.

  Returns:
    A key of `VARIANTS`, or None.
  """
  info = manifest_data.get("splits", {}).get(SPLIT, {})
  words = str(info.get("input", "")).split(" ")
  if len(words) >= 2 and words[0] == _PREFIX and words[1] in VARIANTS:
    return words[1]
  return None


def not_for_training(directory, variant):
  """The one line that refuses to train on an ImageNetV2 dataset, saying what to do instead."""
  return (f"{directory}: an ImageNetV2 {VARIANTS[variant]} dataset (stage 1's --classes_from), a "
          f"test set only, with no training split; train on the dataset whose classes it took "
          f"(the --classes_from of its build), then score this one with python -m train.evaluate "
          f"--shards {directory} --model_dir DIR")
