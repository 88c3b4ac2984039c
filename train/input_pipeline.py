"""The tf.data pipeline from shards to batches of uint8 crops.

The CPU pipeline only decodes the crop (fused into the JPEG decode) and keeps pixels uint8 (a
quarter of the bytes of float32); it carries each crop's offset in the stored 256x256 image and
whether to mirror it. `train.preparation.prepare_batch` then mirrors, subtracts the mean and adds
the lighting as the first operations of the step, on the accelerator.

A batch is a dict: `image` uint8 `[batch, 227, 227, 3]` (not yet mirrored), `label` int32
`[batch]`, `offset` int32 `[batch, 2]` (row, column) and `flipped` bool `[batch]` (mirror it); with
ten crops, `image` is `[batch, 10, 227, 227, 3]`, `offset` `[batch, 10, 2]` and `flipped`
`[batch, 10]`, the last five crops repeating the first five, to be mirrored.

`make_dataset` reads what a `Stream` describes; `distribute_dataset` and `next_batch` are the
training loop's data path (and every evaluation's): per replica, and a read error naming its shard.
"""

import dataclasses

import tensorflow as tf

from common import image as image_lib
from common import schema
from train import corrupt_shards
from train.errors import DataError

# The side of the crops the network sees, cut from the stored 256x256 images. The paper says 224,
# but an 11x11 VALID convolution with stride 4 gives the stated 55x55 conv1 output only from 227
# ((227 - 11) / 4 + 1 = 55); from 224 it gives 54 (and a fractional stride). `train.model` builds
# its input layer from this constant.
CROP_SIZE = 227
# With `deterministic` the interleave reads this many shards at once whatever the core count
# (tf.data's default cycle is one shard per core), so the stream is the same on any machine.
DETERMINISTIC_CYCLE_LENGTH = 8


def ten_crop_windows(image_size, crop_size=CROP_SIZE):
  """The paper's ten test crops (section 4.1): four corners and the centre, then their mirrors.

  Returns:
    `(offsets, flipped)`: ten `[row, column]` pairs and ten bools, as Python lists.
  """
  margin, centre = image_size - crop_size, (image_size - crop_size) // 2
  corners = [[0, 0], [0, margin], [margin, 0], [margin, margin], [centre, centre]]
  return corners * 2, [False] * 5 + [True] * 5


def decode_crop(features, image_format, offset, crop_size=CROP_SIZE):
  """Decodes the `crop_size` square at `offset` (row, column) of one parsed record.

  For JPEG the crop is fused into the decode, which skips the discarded blocks' IDCT.

  Returns:
    uint8 `[crop_size, crop_size, 3]`.
  """
  window = tf.concat([tf.cast(offset, tf.int32), [crop_size, crop_size]], axis=0)
  image = image_lib.decode_image(features, image_format, crop_window=window)
  return tf.ensure_shape(image, [crop_size, crop_size, schema.CHANNELS])


def _example_fn(image_format, image_size, training, ten_crop, with_filename=False):
  """The per-record map: parse, then decode the crop(s) the mode asks for."""
  margin = image_size - CROP_SIZE

  def crops(features, crop_seed):
    if ten_crop:
      # One full decode, then five slices: cheaper than fused decodes of overlapping windows.
      offsets, flipped = ten_crop_windows(image_size)
      image = image_lib.decode_image(features, image_format, image_size=image_size)
      images = [
          tf.slice(image, [row, col, 0], [CROP_SIZE, CROP_SIZE, schema.CHANNELS])
          for row, col in offsets[:5]
      ]
      # prepare_batch mirrors the second five.
      return tf.stack(images + images), tf.constant(offsets, tf.int32), tf.constant(flipped)
    if training and crop_seed is not None:  # Stateless: the crop depends on the seed alone.
      offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(crop_seed, 2))
      offset = tf.random.stateless_uniform([2], offset_seed, 0, margin + 1, tf.int32)
      flipped = tf.random.stateless_uniform([], flip_seed) < 0.5
    elif training:
      offset = tf.random.uniform([2], 0, margin + 1, tf.int32)
      flipped = tf.random.uniform([]) < 0.5
    else:
      offset, flipped = tf.fill([2], margin // 2), tf.constant(False)
    return decode_crop(features, image_format, offset), offset, flipped

  def example(serialized, crop_seed=None):
    features = schema.parse_example(serialized)
    image, offset, flipped = crops(features, crop_seed)
    result = {
        "image": image, "label": tf.cast(features[schema.LABEL], tf.int32), "offset": offset,
        "flipped": flipped
    }
    if with_filename:
      result["filename"] = features[schema.FILENAME]
    return result

  return example


def _deterministic_batches(files, read_shard, example, *, batch_size, shuffle_buffer, seed,
                           skip_corrupt, start_epoch, skip_batches):
  """The training stream of `--deterministic`: epochs `start_epoch`, ... each a function of the
  seed and its number alone (shard order, record order, crops), the first `skip_batches` batches
  of the first one left out (read and shuffled, not decoded), so that a resumed run reads what an
  uninterrupted one would. Each epoch drops its own last partial batch: epochs do not blend."""
  num_files = int(files.cardinality())

  def epoch_batches(epoch):
    epoch_seed = seed * 1_000_003 + epoch
    records = files.shuffle(num_files,
                            seed=epoch_seed).interleave(read_shard,
                                                        cycle_length=DETERMINISTIC_CYCLE_LENGTH,
                                                        num_parallel_calls=tf.data.AUTOTUNE,
                                                        deterministic=True)
    # Numbered after the shuffle: a record's crop is seeded by its place in the epoch.
    records = records.shuffle(shuffle_buffer, seed=epoch_seed).enumerate()
    records = records.skip(
        tf.where(epoch == start_epoch, tf.constant(skip_batches * batch_size, tf.int64), 0))
    examples = records.map(lambda index, record: example(record, tf.stack([epoch_seed, index])),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    examples = examples.ignore_errors(log_warning=True) if skip_corrupt else examples
    return examples.batch(batch_size, drop_remainder=True)

  return tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_batches)


@dataclasses.dataclass(frozen=True)
class Stream:
  """What `make_dataset` streams of a dataset, and how.

  Training repeats forever (the trainer counts epochs in steps) and drops the last partial batch;
  evaluation reads every record exactly once, in shard order, and keeps the partial batch.

  Attributes:
    split: "train", "validation" or "test".
    batch_size: examples per batch (`distribute_dataset`: global, split over the replicas).
    training: random crop and mirror, shuffling and repetition; otherwise the central crop.
    ten_crop: evaluation only: each example holds the paper's ten crops.
    skip_corrupt: drop unreadable records with a logged warning instead of failing.
    shuffle_buffer: records in the shuffle buffer (training only).
    seed: seed of the shard and record shuffles; None varies them from run to run.
    deterministic: training only, needs `seed`: a stream that is a function of the seed alone, in
      which a run resumed at (`start_epoch`, `skip_batches`) reads what an uninterrupted run would
      (see `_deterministic_batches`).
    start_epoch: with `deterministic`, the epoch the stream starts at (0-based).
    skip_batches: with `deterministic`, batches of `start_epoch` already trained on.
    with_filenames: each batch also holds `filename`, the records' `image/filename` (bytes).
  """
  split: str
  _: dataclasses.KW_ONLY
  batch_size: int
  training: bool
  ten_crop: bool = False
  skip_corrupt: bool = False
  shuffle_buffer: int = 10_000
  seed: int | None = None
  deterministic: bool = False
  start_epoch: int = 0
  skip_batches: int = 0
  with_filenames: bool = False

  def __post_init__(self):
    if self.ten_crop and self.training:
      raise ValueError("ten_crop is an evaluation mode; it cannot be combined with training")
    if self.training and self.deterministic and self.seed is None:
      raise ValueError("a deterministic stream needs a seed")


def make_dataset(manifest, stream, input_context=None):
  """Streams one split of a dataset as batches of uint8 crops, as `stream` (a `Stream`) says.

  Args:
    manifest: a `common.dataset.Manifest`.
    stream: a `Stream`: the split, batch size, mode and order.
    input_context: a `tf.distribute.InputContext`; each worker then reads its own subset of shards.

  Returns:
    A `tf.data.Dataset` of batch dicts (see the module docstring).
  """
  split, training = stream.split, stream.training
  paths = manifest.shard_paths(split)
  read_shard = tf.data.TFRecordDataset
  if stream.skip_corrupt:
    # Inside the interleave, so a truncated shard ends that shard's stream, not the whole dataset.
    read_shard = lambda path: (  # noqa: E731
        tf.data.TFRecordDataset(path).ignore_errors(log_warning=True))
  files = tf.data.Dataset.from_tensor_slices(paths)
  # Split by shard before anything random, so workers read disjoint files whatever their seeds.
  if input_context is not None and input_context.num_input_pipelines > 1:
    if len(paths) < input_context.num_input_pipelines:
      raise DataError(f"{split}: {len(paths)} shards cannot feed "
                      f"{input_context.num_input_pipelines} workers; write more shards")
    files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  example = _example_fn(manifest.encoding, manifest.image_size, training, stream.ten_crop,
                        stream.with_filenames)
  if training and stream.deterministic:
    return _deterministic_batches(files, read_shard, example, batch_size=stream.batch_size,
                                  shuffle_buffer=stream.shuffle_buffer, seed=stream.seed,
                                  skip_corrupt=stream.skip_corrupt, start_epoch=stream.start_epoch,
                                  skip_batches=stream.skip_batches).prefetch(tf.data.AUTOTUNE)
  if training:
    # Shuffle the shard order, then repeat: every epoch reads every shard once, in a new order. The
    # file list repeats rather than the batches so the pipeline stays full across epoch boundaries.
    files = files.shuffle(len(paths), seed=stream.seed, reshuffle_each_iteration=True).repeat()
  # Reading several shards at once (as many as the CPU has cores, tf.data's default) hides file
  # latency and, in training, mixes shards before the record shuffle; evaluation stays
  # deterministic so that runs score images in the same order.
  records = files.interleave(read_shard, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=not training)
  # Records are shuffled after the shards: a buffer only mixes records that are close in the
  # stream, so the shard shuffle and interleave above supply the long-range mixing.
  records = records.shuffle(stream.shuffle_buffer, seed=stream.seed) if training else records
  examples = records.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
  examples = examples.ignore_errors(log_warning=True) if stream.skip_corrupt else examples
  # Full batches in training keep the global-batch loss scale and XLA shapes fixed; evaluation keeps
  # the partial last batch so every image is scored exactly once. Copying uint8 crops into a batch
  # is cheap: a parallel batch only took threads from the decoders (-5% on 2 cores).
  batches = examples.batch(stream.batch_size, drop_remainder=training)
  return batches.prefetch(tf.data.AUTOTUNE)


def distribute_dataset(strategy, manifest, stream, service=None):
  """`make_dataset` per input pipeline of `strategy`, `stream.batch_size` (global) split over the
  replicas: the training loop's batches and every evaluation's; read them with `next_batch`.

  `service`, if given, is applied to each input pipeline's dataset: the trainer passes
  `train.distributed.service.distribute` bound to `--data_service`, so that the pipeline runs on
  that tf.data service's workers (training only: its sharding may lose records).
  """

  def dataset_fn(context):
    per_replica = dataclasses.replace(
        stream, batch_size=context.get_per_replica_batch_size(stream.batch_size))
    dataset = make_dataset(manifest, per_replica, input_context=context)
    return service(dataset) if service else dataset

  return strategy.distribute_datasets_from_function(dataset_fn)


def next_batch(iterator, manifest, split):
  """The iterator's next batch, or None at its end; a read error names the shard at fault."""
  try:
    return next(iterator)
  except StopIteration:
    return None
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    raise corrupt_shards.locate(manifest, split, e) from None
