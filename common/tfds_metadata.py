"""The TFDS metadata written beside the shards, so `tfds.builder_from_directory(DIR)` reads them.

Three files, derived from the manifest (which stays the contract) and from `schema.FEATURE_TYPES`,
so a key added to the schema is in the metadata too:

- `dataset_info.json`: each split's shard lengths and bytes, and `filepathTemplate`
  `{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}`, which resolves to our `train-00000-of-00008.tfrecord`
  (without it TFDS looks for `NAME-train.tfrecord-00000-of-00008`);
- `features.json`: a `FeaturesDict` keyed by our own feature keys. `image/encoded` is an `Image`
  (JPEG) or a uint8 `Tensor` stored as bytes (RAW), `image/class/label` a `ClassLabel`, the other
  bytes features `Text` and the other integers int64 `Scalar`s;
- `image.class.label.labels.txt`: the class of each label, by WNID. ImageNet's names are not unique
  (`crane` is a bird and a machine) and `ClassLabel` refuses duplicates; TFDS's own `imagenet2012`
  names its labels by WNID too. The manifest keeps the human-readable names.

They are written here as JSON rather than with `tfds.folder_dataset.write_metadata`, which imports
TensorFlow, and stage 1's launcher never loads it. The bytes are exactly what that function writes
for the same features and splits (`tests/common/test_tfds_metadata.py` compares them).
"""

import json

from common import schema

DATASET_INFO_NAME = "dataset_info.json"
FEATURES_NAME = "features.json"
# TFDS names a ClassLabel's file after the feature's key, "/" turned into ".".
LABELS_NAME = schema.LABEL.replace("/", ".") + ".labels.txt"
FILE_NAMES = (DATASET_INFO_NAME, FEATURES_NAME, LABELS_NAME)

DATASET_NAME = "alexnet_imagenet"
VERSION = "1.0.0"
FILE_FORMAT = "tfrecord"
FILEPATH_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}"
DESCRIPTION = ("ImageNet as written by preprocess.build_shards: 256x256 RGB images, 0-based labels "
               "in sorted WNID order. manifest.json beside these files describes the dataset in "
               "full (class names, skipped and repaired files, statistics).")

_FEATURES = "tensorflow_datasets.core.features."


def _tensor(shape, dtype, encoding="none"):
  return {
      "dtype": dtype, "encoding": encoding,
      "shape": {"dimensions": [str(d) for d in shape]} if shape else {}
  }


def _feature(key, kind, image_format, image_size, num_classes):
  """One entry of the `FeaturesDict`, as TFDS's `FeatureConnector.to_proto` gives it in JSON."""
  if key == schema.ENCODED:
    shape = (image_size, image_size, schema.CHANNELS)
    if image_format == schema.FORMAT_JPEG:
      return {
          "pythonClassName": _FEATURES + "image_feature.Image", "image": {
              "dtype": "uint8", "encodingFormat": "jpeg", "shape": _tensor(shape, "uint8")["shape"]
          }
      }
    if image_format == schema.FORMAT_RAW:  # decoded with tf.io.decode_raw, then reshaped
      return {
          "pythonClassName": _FEATURES + "tensor_feature.Tensor",
          "tensor": _tensor(shape, "uint8", "bytes")
      }
    raise ValueError(f"unknown encoding {image_format!r}, expected one of {schema.FORMATS}")
  if key == schema.LABEL:
    return {
        "pythonClassName": _FEATURES + "class_label_feature.ClassLabel",
        "classLabel": {"numClasses": str(num_classes)}
    }
  if kind is bytes:
    return {"pythonClassName": _FEATURES + "text_feature.Text", "text": {}}
  if kind is int:
    return {"pythonClassName": _FEATURES + "scalar.Scalar", "tensor": _tensor((), "int64")}
  raise ValueError(f"feature {key!r}: no TFDS feature for type {kind!r}")


def features_json(image_format, image_size, num_classes):
  """The `features.json` object: a `FeaturesDict` of every key in `schema.FEATURE_TYPES`.

  Args:
    image_format: the manifest's `encoding`, `schema.FORMAT_JPEG` or `schema.FORMAT_RAW`.
    image_size: side of the stored square images.
    num_classes: the number of labels.

  Returns:
    A JSON-serialisable dict.

  Raises:
    ValueError: an unknown encoding, or a schema type TFDS has no feature for here.
  """
  features = {
      key: _feature(key, kind, image_format, image_size, num_classes)
      for key, kind in schema.FEATURE_TYPES.items()
  }
  return {
      "featuresDict": {"features": features},
      "pythonClassName": _FEATURES + "features_dict.FeaturesDict"
  }


def dataset_info_json(manifest):
  """The `dataset_info.json` object: name, version, file format, splits, supervised keys.

  Args:
    manifest: a manifest dict (`common.manifest` layout).

  Returns:
    A JSON-serialisable dict.

  Raises:
    ValueError: a shard whose file name is not what `FILEPATH_TEMPLATE` resolves to.
  """
  splits = []
  for split, info in manifest["splits"].items():
    shards = info["shards"]
    if not shards:
      continue  # TFDS has nothing to read; the manifest still lists the split's accounting.
    for index, shard in enumerate(shards):
      expected = f"{split}-{index:05d}-of-{len(shards):05d}.{FILE_FORMAT}"
      if shard["file"] != expected:
        raise ValueError(f"shard {shard['file']!r} of split {split}: TFDS would look for "
                         f"{expected!r}")
    splits.append({
        "filepathTemplate": FILEPATH_TEMPLATE, "name": split,
        "numBytes": str(sum(s["size_bytes"] for s in shards)),
        "shardLengths": [str(s["num_examples"]) for s in shards]
    })
  return {
      "description": DESCRIPTION, "fileFormat": FILE_FORMAT, "name": DATASET_NAME, "splits": splits,
      "supervisedKeys": {
          "tuple": {"items": [{"featureKey": schema.ENCODED}, {"featureKey": schema.LABEL}]}
      }, "version": VERSION
  }


def metadata_files(manifest):
  """The TFDS files of a dataset, as TFDS writes them.

  Args:
    manifest: a manifest dict (`common.manifest` layout).

  Returns:
    {file name: bytes} for `FILE_NAMES`, to write into the dataset directory.

  Raises:
    ValueError: as `features_json` and `dataset_info_json`.
  """
  synsets = [c["synset"] for c in manifest["classes"]]
  features = features_json(manifest["encoding"], manifest["image_size"], len(synsets))
  return {
      DATASET_INFO_NAME: json.dumps(dataset_info_json(manifest), indent=2, sort_keys=True).encode(),
      FEATURES_NAME: json.dumps(features, indent=4, sort_keys=True).encode(),
      LABELS_NAME: "".join(f"{synset}\n" for synset in synsets).encode(),
  }
