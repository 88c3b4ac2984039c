"""Stage 1's settings, `BuildOptions`: the one home of each setting, its default, and its flag's help
and bounds. `preprocess.build_shards` generates its flags from these fields (`common/settings.py`)
and builds the options from them; tests and benchmarks make them directly. WORKSPACE.md's table of
stage 1's flags is `settings.markdown_table(BuildOptions)`, kept equal by a test.
"""

import dataclasses
import math

from common.settings import setting
from preprocess.conversion import convert
from preprocess.inputs import class_lists

_SPLITS = ("train", "validation", "test")
_CHECKED = {"bounds_in_help": True}  # absl's bounds, which --helpfull shows


@dataclasses.dataclass(frozen=True)
class BuildOptions:
  """Stage 1's settings: the one home of each, its default and its flag's help and bounds
  (`preprocess.build_shards` generates its flags from these fields, `common/settings.py`)."""
  input_dir: str = setting(
      help="ImageNet as downloaded: the ILSVRC tars, Kaggle's layout or its zip, or an extracted "
      "train/ (and val/ or validation/, test/); forms may be mixed.")
  output_dir: str = setting(help="Where shards, mean.npy and manifest.json are written.")
  encoding: str = setting(
      "jpeg", "jpeg: ~4x smaller than the source, decoded at train time; raw: lossless uint8, "
      "about 2x the source, no decode.", choices=("jpeg", "raw"))
  quality: int = setting(95, "JPEG quality of the stored crops.", low=1, high=100, **_CHECKED)
  jpeg_subsampling: str = setting(
      convert.JPEG_SUBSAMPLING, "Chroma subsampling of the stored JPEGs. 4:4:4 keeps the source's "
      "colour detail; 4:2:0 halves the colour resolution for ~20% fewer bytes (saturated fine "
      "detail drops below 30 dB PSNR).", choices=tuple(convert.JPEG_SUBSAMPLINGS))
  seed: int = setting(0, "Seed of the path hash that assigns images to shards and orders them.",
                      low=0, **_CHECKED)
  # split -> count; None = automatic
  num_shards: dict = setting(None, "{name} shards (default: ~150 MB each).", kind=int,
                             per_split=_SPLITS, flag="num_shards_{split}", low=1, **_CHECKED)
  max_pixels: int = setting(
      89_478_485, "Images with more pixels are skipped as decompression bombs, before decoding.",
      low=1, **_CHECKED)
  # Bounds alone let NaN through (every comparison with it is false): hence the finite checks.
  max_skip_fraction: float = setting(
      0.5, "Fail (after writing report.json) if more than this fraction of images is skipped: the "
      "input is mostly not images, a wrong folder, say.", low=0.0, high=1.0,
      validators=((math.isfinite, "must be a number in [0, 1]"),), **_CHECKED)
  overwrite: bool = setting(False, "Replace a complete dataset in --output_dir.")
  # split -> file; None = look for it
  ground_truth: dict = setting(
      None, {
          "validation": "Labels of a flat val/ folder, one ILSVRC ID or WNID per line in sorted "
                        "filename order (default: the devkit's "
                        "ILSVRC20xx_validation_ground_truth.txt if found).",
          "test": "Labels of a flat test/ folder, likewise."
      }, kind=str, per_split=_SPLITS[1:], flag="{split}_ground_truth")
  devkit_meta: str = setting(
      None, "The devkit's meta.mat, mapping ILSVRC IDs to WNIDs and names (default: found under "
      "--input_dir if present).")
  class_names: str = setting(
      None, "A synset_words.txt or LOC_synset_mapping.txt for class names (default: found under "
      "--input_dir if present).")
  # split -> archive named by a flag
  archives: dict = setting(
      None, "The {split} images as an uncompressed tar (default: found at the root of --input_dir "
      "by content, e.g. ILSVRC2012_img_train.tar); read in place.", kind=str, per_split=_SPLITS,
      flag="{split}_archive")
  devkit_archive: str = setting(
      None, "The devkit's .tar.gz (meta.mat, validation ground truth; default: found at the root "
      "of --input_dir by content).")
  progress_seconds: float = setting(
      30.0, "Seconds between progress lines.", low=0.1,
      validators=((math.isfinite, "must be a finite number of seconds"),), **_CHECKED)
  # a training dataset: the input is ImageNetV2 (inputs/imagenetv2.py)
  classes_from: str = setting(
      None, "Build an evaluation-only ImageNetV2 dataset from --input_dir (a variant's folder, or "
      "its decompressed tar), in the classes of this training dataset (its --output_dir).")
  # a subset (inputs/subsets.py): a named list or a file of WNIDs
  classes: str = setting(
      None, "Keep only these classes: a file of WNIDs (one a line) or a list this project ships "
      f"({', '.join(sorted(class_lists.NAMED))}). Labels are 0-based over them in sorted WNID "
      "order; validation and test keep the same classes.")
  per_class: int = setting(
      None, "Keep N training images per class, chosen by the hash of each file name and --seed "
      "(the same on every input form and runner); a class with fewer keeps all.", low=1, **_CHECKED)
  train_list: str = setting(
      None, "Keep exactly the training files named in this file, one name a line (the form of "
      "SimCLR's 1percent.txt, e.g. n01440764_10026.JPEG).")
  # fingerprint every image and look for copies (preprocess/audit/)
  audit_duplicates: bool = setting(
      True, "Fingerprint every image and list the copies among them (duplicates.json); with "
      "--classes_from, against that dataset's training images too.")
  # "train": leave out the training copies of held-out images
  drop_duplicates: str = setting(
      None, "train: leave out the training images the audit finds to be copies of validation or "
      "test images, so the held-out splits stay the standard ones; the manifest lists what was "
      "left out.", choices=("train",))
