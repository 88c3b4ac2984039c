"""Tests of train/input_pipeline.py on the tiny synthetic dataset of conftest.py."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from common import manifest as manifest_lib
from common import schema
from train import corrupt_shards
from train import errors
from train.evaluation import scoring
from train import input_pipeline
from train import preparation

CROP = input_pipeline.CROP_SIZE


def _records(manifest, split):
  return [r.numpy() for path in manifest.shard_paths(split) for r in tf.data.TFRecordDataset(path)]


def _full_image(record):
  return tf.io.decode_jpeg(schema.parse_example(record)[schema.ENCODED], channels=3).numpy()


def _difference(expected, actual):
  """Mean absolute pixel difference. A crop fused into the JPEG decode (which tf.data's graph
  rewrites also do to decode-then-slice) upsamples chroma near block edges a little differently
  from a full decode (by up to a few grey levels), so exact equality would be the wrong test."""
  if expected.shape != actual.shape:
    return np.inf
  return np.abs(expected.astype(float) - actual).mean()


def _prep(manifest):
  return preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)


def test_training_batches_have_crop_offsets_in_range_and_both_flips(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  dataset = input_pipeline.make_dataset(
      manifest, input_pipeline.Stream("train", batch_size=6, training=True, seed=3))
  margin = manifest.image_size - CROP
  offsets, flips, labels = [], [], []
  # The training stream repeats: more batches than one epoch holds must come out.
  for batch in dataset.take(2 * manifest.num_examples("train") // 6 + 1):
    assert batch["image"].dtype == tf.uint8 and batch["image"].shape == (6, CROP, CROP, 3)
    assert batch["label"].dtype == tf.int32 and batch["offset"].shape == (6, 2)
    offsets.append(batch["offset"].numpy())
    flips.append(batch["flipped"].numpy())
    labels.append(batch["label"].numpy())
  offsets, flips, labels = map(np.concatenate, (offsets, flips, labels))
  assert offsets.min() >= 0 and offsets.max() <= margin
  assert len(np.unique(offsets)) > 3
  assert flips.any() and not flips.all()
  assert set(labels) == set(range(manifest.num_classes))


def test_training_crop_matches_its_offset(dataset_dir):
  # Records are shuffled, so compare each crop with the window at its offset in every record: the
  # pixel noise (std 25) makes any other window or offset differ by tens of grey levels on average.
  manifest = dataset_lib.load(dataset_dir)
  full = [_full_image(r) for r in _records(manifest, "train")]
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=4, training=True))))
  for image, (row, col) in zip(batch["image"].numpy(), batch["offset"].numpy()):
    windows = [f[row:row + CROP, col:col + CROP] for f in full]
    assert min(_difference(w, image) for w in windows) < 2.0


@pytest.mark.parametrize("offset", [(0, 0), (29, 3), (14, 14)])
def test_decode_crop_agrees_eagerly_and_inside_tf_data(dataset_dir, offset):
  manifest = dataset_lib.load(dataset_dir)
  record = _records(manifest, "validation")[0]
  crop = lambda r: input_pipeline.decode_crop(  # noqa: E731
      schema.parse_example(r), manifest.encoding, tf.constant(offset))
  eager = crop(tf.constant(record)).numpy()
  in_graph = next(iter(tf.data.Dataset.from_tensors(record).map(crop))).numpy()
  np.testing.assert_array_equal(eager, in_graph)
  full = _full_image(record)
  assert _difference(full[offset[0]:offset[0] + CROP, offset[1]:offset[1] + CROP], eager) < 2.0
  shifted = full[offset[0] + 1:offset[0] + 1 + CROP, offset[1]:offset[1] + CROP]
  assert _difference(shifted, eager) > 10.0


def test_evaluation_reads_every_image_once_in_order(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  dataset = input_pipeline.make_dataset(
      manifest, input_pipeline.Stream("validation", batch_size=4, training=False))
  batches = list(dataset)
  assert [len(b["label"]) for b in batches] == [4, 4, 1]
  labels = np.concatenate([b["label"].numpy() for b in batches])
  expected = [
      schema.parse_example(r)[schema.LABEL].numpy() for r in _records(manifest, "validation")
  ]
  np.testing.assert_array_equal(labels, expected)
  margin = (manifest.image_size - CROP) // 2
  assert all(
      (b["offset"].numpy() == margin).all() and not b["flipped"].numpy().any() for b in batches)
  again = np.concatenate([b["image"].numpy() for b in dataset])
  np.testing.assert_array_equal(np.concatenate([b["image"].numpy() for b in batches]), again)


def test_ten_crop_gives_corners_centre_and_mirrors(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  full = _full_image(_records(manifest, "validation")[0])
  batch = next(
      iter(
          input_pipeline.make_dataset(
              manifest,
              input_pipeline.Stream("validation", batch_size=2, training=False, ten_crop=True))))
  assert batch["image"].shape == (2, 10, CROP, CROP, 3)
  crops, offsets, flipped = (batch[k][0].numpy() for k in ("image", "offset", "flipped"))
  assert sorted(map(tuple, offsets[:5])) == [(0, 0), (0, 29), (14, 14), (29, 0), (29, 29)]
  np.testing.assert_array_equal(offsets[:5], offsets[5:])
  np.testing.assert_array_equal(flipped, [False] * 5 + [True] * 5)
  np.testing.assert_array_equal(crops[:5], crops[5:])  # prepare_batch mirrors the second five.
  for crop, (row, col) in zip(crops, offsets):
    assert _difference(full[row:row + CROP, col:col + CROP], crop) < 2.0
  pixels = preparation.prepare_batch(batch, _prep(manifest), training=False).numpy()
  np.testing.assert_allclose(pixels[5:10], pixels[0:5, :, ::-1], atol=1e-4)


class _CornerPixelModel:
  """A stand-in network whose logits are the R, G and B of each crop's top-left pixel: easy to
  predict by hand, and different from crop to crop (the pixel noise has a std of 25)."""

  def __call__(self, images, training):
    del training
    return images[:, 0, 0, :] / 20.0


def test_ten_crop_eval_averages_the_softmax_over_the_crops(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  prep = _prep(manifest)
  batch = next(
      iter(
          input_pipeline.make_dataset(
              manifest,
              input_pipeline.Stream("validation", batch_size=3, training=False, ten_crop=True))))
  stats = scoring.eval_step(_CornerPixelModel(), batch, prep).numpy()
  pixels = preparation.prepare_batch(batch, prep, training=False).numpy()
  logits = pixels[:, 0, 0, :].reshape(3, 10, 3) / 20.0
  softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  averaged = softmax.mean(axis=1)
  labels = batch["label"].numpy()
  expected_loss = -np.log(averaged[np.arange(3), labels]).sum()
  np.testing.assert_allclose(stats[0], expected_loss, rtol=1e-4)
  assert stats[1] == (averaged.argmax(-1) == labels).sum() and stats[3] == 3
  # Averaging softmax outputs is not averaging logits: the test would not notice otherwise.
  mean_logits = logits.mean(1)
  log_softmax_of_mean = mean_logits - np.log(np.exp(mean_logits).sum(-1, keepdims=True))
  assert not np.allclose(np.log(averaged), log_softmax_of_mean)


def test_prepare_batch_mirrors_and_subtracts_the_matching_mean_window(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  prep = _prep(manifest)
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=4, training=True))))
  eager = preparation.prepare_batch(batch, prep, training=False).numpy()
  in_graph = next(
      iter(
          tf.data.Dataset.from_tensors(batch).map(
              lambda b: preparation.prepare_batch(b, prep, training=False)))).numpy()
  np.testing.assert_allclose(eager, in_graph, atol=1e-4)
  mean = prep.mean_image
  for i, ((row, col), flipped) in enumerate(zip(batch["offset"].numpy(), batch["flipped"].numpy())):
    image, window = batch["image"][i].numpy(), mean[row:row + CROP, col:col + CROP]
    expected = image[:, ::-1] - window[:, ::-1] if flipped else image - window
    np.testing.assert_allclose(eager[i], expected, atol=1e-4)


def test_pca_lighting_shifts_each_image_by_one_colour_of_a_few_grey_levels(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  prep = _prep(manifest)
  batch = next(
      iter(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=6, training=True))))
  plain = preparation.prepare_batch(batch, prep, training=False).numpy()
  lit = preparation.prepare_batch(batch, prep, training=True,
                                  rng=tf.random.Generator.from_seed(1)).numpy()
  again = preparation.prepare_batch(batch, prep, training=True,
                                    rng=tf.random.Generator.from_seed(1)).numpy()
  np.testing.assert_array_equal(lit, again)
  shift = lit - plain
  per_image = shift[:, :1, :1, :]
  np.testing.assert_allclose(shift, np.broadcast_to(per_image, shift.shape), atol=1e-3)
  eigval, eigvec = prep.eigval, prep.eigvec
  # Each shift is a combination of the eigenvectors with weights alpha * eigval / 255.
  alphas = np.linalg.solve(eigvec, per_image.reshape(6, 3).T).T * 255.0 / eigval
  assert 0.01 < np.abs(alphas).mean() < 0.5
  assert 0.0 < np.abs(per_image).max() < 60.0


def _truncate(path, fraction=0.6):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * fraction)])


def test_truncated_shard_error_names_the_file(writable_dataset_dir):
  with pytest.raises(manifest_lib.ManifestError, match="validation-00000"):
    _truncate(os.path.join(writable_dataset_dir, "validation-00000-of-00001.tfrecord"))
    dataset_lib.load(writable_dataset_dir)
  # Past the manifest's size check (e.g. a shard damaged during training), the reader names it.
  manifest = dataset_lib.load(writable_dataset_dir, verify="none")
  dataset = input_pipeline.make_dataset(
      manifest, input_pipeline.Stream("validation", batch_size=4, training=False))
  with pytest.raises(tf.errors.DataLossError) as raised:
    list(dataset)
  error = corrupt_shards.locate(manifest, "validation", raised.value)
  assert isinstance(error, errors.CorruptDataError)
  assert "validation-00000-of-00001.tfrecord" in str(error) and "--skip_corrupt" in str(error)


def test_corrupt_record_in_training_is_named_or_skipped(writable_dataset_dir):
  path = os.path.join(writable_dataset_dir, "train-00001-of-00002.tfrecord")
  with open(path, "r+b") as f:
    f.seek(5000)
    byte = f.read(1)
    f.seek(5000)
    f.write(bytes([byte[0] ^ 0xFF]))  # Same size: only the record's CRC can tell.
  manifest = dataset_lib.load(writable_dataset_dir)
  with pytest.raises(errors.CorruptDataError, match="train-00001-of-00002"):
    try:
      list(
          input_pipeline.make_dataset(manifest,
                                      input_pipeline.Stream("train", batch_size=4, training=False)))
    except tf.errors.OpError as e:
      raise corrupt_shards.locate(manifest, "train", e) from None
  skipped = input_pipeline.make_dataset(
      manifest, input_pipeline.Stream("train", batch_size=4, training=False, skip_corrupt=True))
  count = sum(len(b["label"]) for b in skipped)
  assert 0 < count < manifest.num_examples("train")


def test_the_crop_size_lives_on_the_data_side():
  """The pipeline does not import the model for its input size; the model takes it from here."""
  script = ("import sys; from train import input_pipeline; "
            "assert 'train.model' not in sys.modules, 'input_pipeline imports the model'; "
            "from train import model; "
            "assert model.alexnet(3, width=0.0625).input_shape[1] == input_pipeline.CROP_SIZE")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False, cwd=os.path.dirname(
                              os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert result.returncode == 0, result.stderr[-2000:]
