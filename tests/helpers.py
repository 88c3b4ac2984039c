"""Shared test helpers: building datasets in-process and reading shards back."""

import json
import os

import numpy as np
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from common import dataset as dataset_lib
from common import image as image_lib
from common import manifest as manifest_lib
from common import schema
from preprocess.job import build

# Beam's in-process runner: no worker start-up, so most tests build in a few seconds.
IN_PROCESS = ["--runner=DirectRunner"]
TWO_PROCESSES = [
    "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"
]


def build_dataset(input_dir, output_dir, beam_args=IN_PROCESS, **options):
  """Runs the whole build in this process and returns the manifest dict as written."""
  options.setdefault("progress_seconds", 3600)
  build.run_build(
      build.BuildOptions(input_dir=str(input_dir), output_dir=str(output_dir), **options),
      PipelineOptions(list(beam_args)))
  path = os.path.join(output_dir, manifest_lib.MANIFEST_NAME)
  with open(path, "rb") as f:
    return manifest_lib.parse(f.read(), path)


def read_records(dataset_dir, split):
  """Every record of a split, parsed to numpy values, in shard order then record order."""
  manifest = dataset_lib.load(str(dataset_dir))
  records = []
  for path in manifest.shard_paths(split):
    for serialized in tf.data.TFRecordDataset(path):
      features = schema.parse_example(serialized)
      pixels = image_lib.decode_image(features, manifest.encoding).numpy()
      record = {k: v.numpy() for k, v in features.items()}
      record = {
          k: v.decode() if isinstance(v, bytes) and k != schema.ENCODED else v
          for k, v in record.items()
      }
      record["pixels"] = pixels
      record["shard"] = os.path.basename(path)
      records.append(record)
  return records


def output_files(dataset_dir):
  """name -> bytes of every file in a dataset directory (the manifest without its run options)."""
  files = {}
  for name in sorted(os.listdir(dataset_dir)):
    path = os.path.join(dataset_dir, name)
    if os.path.isfile(path):
      with open(path, "rb") as f:
        files[name] = f.read()
  if manifest_lib.MANIFEST_NAME in files:
    data = json.loads(files[manifest_lib.MANIFEST_NAME])
    data.pop("args")
    files[manifest_lib.MANIFEST_NAME] = data
  return files


def float64_statistics(images):
  """Reference mean image and RGB covariance of uint8 images, in float64 NumPy."""
  stack = np.stack(images).astype(np.float64)
  pixels = stack.reshape(-1, 3)
  return stack.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)
