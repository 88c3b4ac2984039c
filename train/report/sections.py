"""The data of each section of `train.report`, from the per-image scores: pure NumPy, no TensorFlow.

Every function takes arrays (labels, pessimistic top-k hits, top-5 predictions, kernels, features)
and returns plain Python structures that the template renders.
"""

import collections

import numpy as np

from common import audit as audit_lib
from common import imagenetv2
from train.evaluation import duplicates as duplicates_lib

# Krizhevsky et al. (2012), one network: Table 1 (ILSVRC-2010 test) and Table 2 (ILSVRC-2012
# validation, "1 CNN"). Only a 1,000-class ILSVRC dataset is comparable.
PAPER_ERRORS = {
    "2010": {
        "split": "test", "top1": 0.375, "top5": 0.170, "source": "ILSVRC-2010 test set (Table 1)"
    },
    "2012": {
        "split": "validation", "top1": 0.407, "top5": 0.182,
        "source": "ILSVRC-2012 validation set, one network (Table 2)"
    },
}
ILSVRC_CLASSES = 1000
AS_RELEASED = "as released"  # the standard rows' label beside the rows without the audit's copies
# torchvision's pretrained AlexNet, as imagenet-testbed (Taori et al. 2020,
# modestyachts/imagenet-testbed) reports it: top-1 accuracy on ILSVRC-2012 validation and on each
# ImageNetV2 variant (Recht et al. 2019). Its top-5 is not given there. No published ReaL figure for
# torchvision's AlexNet was found (timm's ReaL results list only timm's own models).
TESTBED_SOURCE = "imagenet-testbed (Taori et al. 2020)"
TORCHVISION_TOP1_ACCURACY = {
    "ILSVRC-2012 validation": 0.5652,
    "ImageNetV2 MatchedFrequency": 0.4397,
    "ImageNetV2 Threshold0.7": 0.5131,
    "ImageNetV2 TopImages": 0.5817,
}


def ilsvrc_release(manifest_data):
  """Which ILSVRC release a manifest describes: "2010", "2012" or None.

  Only 1,000-class datasets qualify; the year comes from the build's recorded options (the devkit
  or ground-truth paths name it, e.g. `ILSVRC2012_devkit_t12`), else from the split with labels that
  only ILSVRC-2010 published (its test set).

  Args:
    manifest_data: the parsed `manifest.json`.

  Returns:
    "2010", "2012" or None.
  """
  if (len(manifest_data["classes"]) != ILSVRC_CLASSES or imagenetv2.variant_of(manifest_data) or
      manifest_data.get("subset")):  # 1% of the training images is no longer the paper's run
    return None
  text = " ".join(str(value) for value in manifest_data.get("args", {}).values())
  years = [year for year in PAPER_ERRORS if f"ILSVRC{year}" in text or f"ILSVRC-{year}" in text]
  if len(years) == 1:
    return years[0]
  has_test = manifest_data["splits"].get("test", {}).get("num_examples", 0) > 0
  return "2010" if has_test else None


def comparable_variant(manifest_data):
  """The ImageNetV2 variant a dataset holds, when its figures compare with published ones (its
  classes are ILSVRC-2012's 1,000); else None."""
  if len(manifest_data["classes"]) != ILSVRC_CLASSES:
    return None
  return imagenetv2.variant_of(manifest_data)


def final_metrics(scores, release, split, variant=None, duplicates=None):
  """Our top-1/top-5 errors (central crop, ten crops, and ReaL's when scored) and the published
  figures they compare with, only where they apply.

  Args:
    scores: the per-image arrays of `passes.score_split`.
    release: `ilsvrc_release(...)`.
    split: the split scored.
    variant: `comparable_variant(...)`: the ImageNetV2 variant the split is, or None.
    duplicates: the split's file names stage 1's audit found in training; None when there is no
      audit to report (not audited, or the training split).

  Returns:
    `{rows: [{method, which, top1, top5, count}], references: [{who, on, top1, top5, source}],
    real_left_out: images without ReaL labels (None if ReaL was not scored), duplicates:
    {left_out, which} (None without an audit)}`, all errors; a row's `which` is "as released" or
    the label of the rows without the audit's images (`duplicates.which`) when it found some, else
    None; a reference's top5 is None where it was not published.
  """
  rows, references = [], []
  labelled = scores.get("real_labelled")
  everything = np.ones(len(scores["label"]), bool)
  sets, audit = [(everything, None)], None
  if duplicates is not None:
    audit = {"left_out": 0, "which": None}
  if duplicates:
    keep = duplicates_lib.kept(scores["filename"], duplicates, split)
    left_out = int((~keep).sum())
    audit = {"left_out": left_out, "which": duplicates_lib.without(left_out)}
    sets = [(everything, AS_RELEASED), (keep, audit["which"])]
  for mode, method in (("central", "central crop"), ("ten_crop", "ten crops (paper's test)")):
    if f"{mode}_top1" in scores:
      rows += [_row(method, which, scores, mode, mask) for mask, which in sets]
  for mode, method in (("central", "ReaL, central crop"), ("ten_crop", "ReaL, ten crops")):
    if f"{mode}_real_top1" in scores and labelled.any():
      rows.append(_row(method, None, scores, f"{mode}_real", labelled))
  # ImageNetV2 replicates ILSVRC-2012's validation set: its figures sit beside that set's.
  paper = PAPER_ERRORS["2012"] if variant else PAPER_ERRORS.get(release)
  if paper and (paper["split"] == split or variant):
    references.append({
        "who": "Krizhevsky et al. (2012)", "on": paper["source"], "top1": paper["top1"],
        "top5": paper["top5"], "source": "the paper"
    })
  if variant or (release == "2012" and split == "validation"):
    references.append(_torchvision("ILSVRC-2012 validation"))
  if variant:
    references.append(_torchvision(f"ImageNetV2 {imagenetv2.VARIANTS[variant]}"))
  return {
      "rows": rows, "references": references, "real_left_out": None if labelled is None else int(
          (~labelled).sum()), "duplicates": audit
  }


def _row(method, which, scores, prefix, mask):
  """One row of the metrics table: errors over the images `mask` marks."""
  return {
      "method": method, "which": which, "top1": 1 - scores[f"{prefix}_top1"][mask].mean(),
      "top5": 1 - scores[f"{prefix}_top5"][mask].mean(), "count": int(mask.sum())
  }


def _torchvision(on):
  return {
      "who": "torchvision's AlexNet", "on": on, "top1": 1 - TORCHVISION_TOP1_ACCURACY[on],
      "top5": None, "source": TESTBED_SOURCE
  }


def per_class_table(labels, top1, top5, class_names):
  """Every class's image count and top-1/top-5 accuracy, worst first.

  Args:
    labels: int `[n]` true labels.
    top1: bool `[n]` pessimistic top-1 hits.
    top5: bool `[n]` pessimistic top-5 hits.
    class_names: the names in label order.

  Returns:
    `[{label, name, count, top1, top5}]` sorted by top-1 then top-5 accuracy, ascending; classes
    with no image come last with accuracies None.
  """
  num_classes = len(class_names)
  counts = np.bincount(labels, minlength=num_classes)
  hits1 = np.bincount(labels, weights=top1.astype(np.float64), minlength=num_classes)
  hits5 = np.bincount(labels, weights=top5.astype(np.float64), minlength=num_classes)
  rows = [{
      "label": label, "name": class_names[label], "count": int(counts[label]),
      "top1": hits1[label] / counts[label] if counts[label] else None,
      "top5": hits5[label] / counts[label] if counts[label] else None
  } for label in range(num_classes)]
  return sorted(rows, key=lambda r: (r["count"] == 0, r["top1"] or 0, r["top5"] or 0, r["label"]))


def confusion_pairs(labels, predicted, max_pairs, max_examples):
  """The (true, predicted) class pairs with the most top-1 mistakes.

  Args:
    labels: int `[n]` true labels.
    predicted: int `[n]` top-1 predictions (the first of the top-5).
    max_pairs: pairs to return.
    max_examples: image indices to keep per pair.

  Returns:
    `[{true, predicted, count, examples: [image index]}]`, most frequent first (ties by labels).
  """
  wrong = collections.defaultdict(list)
  for index in np.flatnonzero(labels != predicted):
    wrong[(int(labels[index]), int(predicted[index]))].append(int(index))
  ranked = sorted(wrong.items(), key=lambda item: (-len(item[1]), item[0]))[:max_pairs]
  return [{
      "true": true, "predicted": pred, "count": len(indices), "examples": indices[:max_examples]
  } for (true, pred), indices in ranked]


def spread_sample(count, size):
  """`size` indices spread evenly over `range(count)`, so a sample is not one shard's first images."""
  if count <= size:
    return np.arange(count)
  return np.unique(np.linspace(0, count - 1, size).round().astype(np.int64))


def conv1_tiles(kernel, groups, scale=4, gap=1):
  """Figure 3: conv1's kernels as colour tiles, one row per tower, on a white background.

  Row g holds the filters whose outputs conv2's group g reads: channels
  `g * filters / groups .. (g + 1) * filters / groups - 1` (GroupedConv2D splits channels in order).
  Each kernel is stretched to 0..255 on its own, as the paper's figure shows weak filters too.

  Args:
    kernel: float `[k, k, 3, filters]`, conv1's kernel (RGB input channels).
    groups: towers (conv2's groups).
    scale: pixels per kernel weight.
    gap: white pixels between tiles (before scaling).

  Returns:
    uint8 `[rows, cols, 3]` image.
  """
  size, _, channels, filters = kernel.shape
  if channels != 3 or filters % groups:
    raise ValueError(f"conv1 kernel {kernel.shape} cannot be drawn as RGB tiles in {groups} rows")
  per_row = filters // groups
  step = size + gap
  canvas = np.full((groups * step + gap, per_row * step + gap, 3), 255, np.uint8)
  for index in range(filters):
    tile = kernel[:, :, :, index]
    low, high = tile.min(), tile.max()
    tile = (tile - low) / (high - low) if high > low else np.zeros_like(tile)
    row, col = divmod(index, per_row)
    canvas[gap + row * step:gap + row * step + size,
           gap + col * step:gap + col * step + size] = np.round(tile * 255).astype(np.uint8)
  return np.kron(canvas, np.ones((scale, scale, 1), np.uint8))


def nearest_neighbours(queries, pool, k):
  """The `k` pool rows nearest each query row in Euclidean distance.

  Args:
    queries: float `[q, d]`.
    pool: float `[p, d]`.
    k: neighbours per query (at most p).

  Returns:
    `(indices, distances)`, each `[q, min(k, p)]`, nearest first.
  """
  queries, pool = np.asarray(queries, np.float64), np.asarray(pool, np.float64)
  # |q - p|^2 = |q|^2 - 2 q.p + |p|^2, clipped at 0 against rounding.
  squared = ((queries**2).sum(1)[:, None] - 2 * queries @ pool.T + (pool**2).sum(1)[None])
  distances = np.sqrt(np.maximum(squared, 0))
  k = min(k, len(pool))
  order = np.argsort(distances, axis=1, kind="stable")[:, :k]
  return order, np.take_along_axis(distances, order, axis=1)


def dataset_summary(manifest_data):
  """Images per split, classes, the subset, the duplicate audit, and skipped and repaired files
  counted by reason.

  Returns:
    `{classes, subset, audit, dropped, splits: [{split, images}], skipped: [(reason, count)],
    repaired: [(fix, count)]}`; `subset` is None for a whole release, `audit` the audit's summary
    line (`common.audit.summary`) or None when the dataset was not audited, `dropped` the
    training images `--drop_duplicates=train` left out.
  """
  audit = manifest_data.get("audit")
  return {
      "classes":
          len(manifest_data["classes"]),
      "subset":
          subset_name(manifest_data.get("subset")),
      "audit":
          audit_lib.summary(audit["counts"]) if audit else None,
      "dropped":
          len(audit["dropped"]) if audit else 0,
      "splits": [{"split": split, "images": data.get("num_examples", 0)}
                 for split, data in sorted(manifest_data["splits"].items())],
      "skipped":
          sorted(
              collections.Counter(s["reason"] for s in manifest_data.get("skipped", [])).items()),
      "repaired":
          sorted(collections.Counter(r["fix"] for r in manifest_data.get("repaired", [])).items()),
  }


def subset_name(subset):
  """How the report names a subset (`common/manifest.py`'s `subset`), or None for a whole release."""
  if not subset:
    return None
  classes = f"{len(subset['wnids'])} classes"
  parts = [f"{subset['name']} ({classes})" if subset["name"] else classes]
  if subset["train_list"]:
    parts.append(f"training files of {subset['train_list']}")
  if subset["per_class"]:
    parts.append(f"{subset['per_class']} training images per class")
  return ", ".join(parts) + f" (digest {subset['digest'][:12]})"
