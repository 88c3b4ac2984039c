"""The first operations of every step: mirror, subtract the mean, add the paper's PCA lighting.

They run inside the train or eval step, on the accelerator, on the uint8 crops of
`train.input_pipeline` (each with its offset in the stored image and whether to mirror it). On 2
CPU cores the float work costs a CPU pipeline about 40% of its throughput, and even the uint8 mirror
cost ours about 15% (benchmarks/bench_input_pipeline.py).
"""

import dataclasses

import tensorflow as tf

from common import image as image_lib
from common import schema
from train.input_pipeline import CROP_SIZE

# Section 4.1: alpha ~ N(0, 0.1) per eigenvector, drawn once per image per presentation.
LIGHTING_STDDEV = 0.1
PIXEL_MAX = 255.0


def mirror(images, flipped):
  """Mirrors left-right the images `[n, h, w, 3]` whose `flipped` `[n]` is true."""
  return tf.where(tf.reshape(flipped, [-1, 1, 1, 1]), tf.reverse(images, [2]), images)


@dataclasses.dataclass(frozen=True)
class Preparation:
  """The dataset's constants that `prepare_batch` needs, as float32 tensors.

  Attributes:
    mean_image: `[size, size, 3]`, the training set's mean image in 0..255 units.
    eigval: `[3]`, the eigenvalues of the training set's RGB covariance (`rgb_eigval`).
    eigvec: `[3, 3]`, its eigenvectors, column j for eigenvalue j (`rgb_eigvec`).
  """
  mean_image: tf.Tensor
  eigval: tf.Tensor
  eigvec: tf.Tensor

  @classmethod
  def from_stats(cls, mean_image, stats):
    """From a mean image and a manifest's `stats` dict (or its copy in a model's config.json)."""
    return cls(tf.constant(mean_image, tf.float32), tf.constant(stats["rgb_eigval"], tf.float32),
               tf.constant(stats["rgb_eigvec"], tf.float32))


def prepare_batch(batch, prep, training, rng=None, lighting=True):
  """The first operations of a step: uint8 crops to mirrored, mean-subtracted float32 pixels.

  In training, adds the paper's PCA lighting (section 4.1): for each image, `eigvec @ (alpha *
  eigval)` with `alpha ~ N(0, 0.1)` per eigenvector, added to every pixel. The paper's formula is
  not dimensionally consistent (it scales by eigenvalues, i.e. variances); it is applied here, as
  in the common reproductions, to pixels scaled to [0, 1], which in our 0..255 units divides the
  eigenvalues (given in 0..255 units squared) by 255 once: a shift of a few grey levels.

  Args:
    batch: a batch dict from `make_dataset`; ten-crop batches are flattened to `[batch * 10, ...]`.
    prep: the dataset's `Preparation` (mean image and colour eigen-decomposition).
    training: add the lighting noise (if `lighting`).
    rng: a `tf.random.Generator` for the lighting noise (training only).
    lighting: whether training adds it (bvlc_alexnet's recipe does not).

  Returns:
    float32 `[n, 227, 227, 3]`, n = batch (times 10 with ten crops).
  """
  images = batch["image"]
  images = tf.reshape(images, [-1, CROP_SIZE, CROP_SIZE, schema.CHANNELS])
  offsets = tf.reshape(batch["offset"], [-1, 2])
  flipped = tf.reshape(batch["flipped"], [-1])
  pixels = image_lib.subtract_mean(mirror(images, flipped), prep.mean_image, offsets, flipped)
  if training and lighting:
    alpha = rng.normal([tf.shape(pixels)[0], 3], stddev=LIGHTING_STDDEV)
    shift = tf.linalg.matvec(prep.eigvec, alpha * prep.eigval)
    pixels += shift[:, tf.newaxis, tf.newaxis, :] / PIXEL_MAX
  return pixels
