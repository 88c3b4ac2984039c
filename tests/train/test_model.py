"""Tests for the AlexNet model: shapes, parameter count, layer wiring, LRN, init, dropout, training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from train import input_pipeline
from train import model

TRAINABLE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
TINY_WIDTH = 0.125  # 12 conv1 filters, 512-unit fc6 and fc7: fast to run on a CPU.


@pytest.fixture(scope="module")
def paper_model():
  # Building the full network is cheap (a couple of seconds); only shapes and weights are used.
  return model.alexnet(1000)


@pytest.fixture(scope="module")
def tiny_model():
  return model.alexnet(10, width=TINY_WIDTH)


def _images(batch, seed=0):
  # Mean-subtracted pixels have roughly this spread.
  size = input_pipeline.CROP_SIZE
  return tf.random.stateless_normal([batch, size, size, 3], [seed, 0], stddev=60.0)


def test_layer_output_shapes(paper_model):
  expected = {
      "conv1": (55, 55, 96),
      "pool1": (27, 27, 96),
      "conv2": (27, 27, 256),
      "pool2": (13, 13, 256),
      "conv3": (13, 13, 384),
      "conv4": (13, 13, 384),
      "conv5": (13, 13, 256),
      "pool5": (6, 6, 256),
      "flatten": (9216,),
      "fc6": (4096,),
      "fc7": (4096,),
      "fc8": (1000,),
      "logits": (1000,),
  }
  assert input_pipeline.CROP_SIZE == 227
  for name, shape in expected.items():
    assert tuple(paper_model.get_layer(name).output.shape) == (None, *shape), name


def test_parameter_counts(paper_model):
  assert paper_model.count_params() == 60_965_224
  # One tower: conv2, conv4 and conv5 see all their input channels, doubling their kernels:
  # 5*5*48*256 + 3*3*192*384 + 3*3*192*256 = 1,413,120 more weights.
  assert model.alexnet(1000, groups=1).count_params() == 60_965_224 + 1_413_120


def test_each_trainable_layer_holds_one_kernel_and_one_bias(paper_model):
  for name in TRAINABLE_LAYERS:
    assert [v.path for v in paper_model.get_layer(name).weights
           ] == [f"{name}/kernel", f"{name}/bias"]


def test_width_scales_every_layer_but_the_classifier():
  narrow = model.alexnet(7, width=0.25)
  widths = {name: narrow.get_layer(name).output.shape[-1] for name in TRAINABLE_LAYERS}
  assert widths == {
      "conv1": 24, "conv2": 64, "conv3": 96, "conv4": 96, "conv5": 64, "fc6": 1024, "fc7": 1024,
      "fc8": 7
  }


def test_layer_wiring(tiny_model):

  def feeds(source, target):
    return tiny_model.get_layer(target).input is tiny_model.get_layer(source).output

  for i in (1, 2, 3, 4, 5):
    assert feeds(f"conv{i}", f"relu{i}")
  for i in (1, 2):
    assert feeds(f"relu{i}", f"norm{i}") and feeds(f"norm{i}", f"pool{i}")
  assert feeds("relu5", "pool5")
  for i in (6, 7):
    assert feeds(f"fc{i}", f"relu{i}") and feeds(f"relu{i}", f"drop{i}")
  assert feeds("drop6", "fc7") and feeds("drop7", "fc8")
  # The logits are fc8's output unchanged: no ReLU (and no softmax) on the classifier.
  assert feeds("fc8", "logits")
  assert tiny_model.output is tiny_model.get_layer("logits").output


def test_activations_are_rectified_but_logits_are_not(tiny_model):
  names = [f"relu{i}" for i in range(1, 8)]
  probe = keras.Model(tiny_model.input,
                      [tiny_model.get_layer(name).output for name in names] + [tiny_model.output])
  *activations, logits = probe(_images(2), training=False)
  for name, activation in zip(names, activations):
    assert np.min(activation) >= 0.0, name
  assert np.min(logits) < 0.0


def test_local_response_normalization_matches_the_papers_formula():
  k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
  # Large activations, so that dividing alpha by n (Caffe's convention) would be far out of tolerance.
  a = np.random.default_rng(0).normal(scale=30.0, size=[2, 3, 4, 11]).astype(np.float32)
  channels = a.shape[-1]
  expected = np.empty_like(a)
  for i in range(channels):
    window = a[..., max(0, i - n // 2):min(channels - 1, i + n // 2) + 1]
    expected[..., i] = a[..., i] / (k + alpha * np.sum(window**2, axis=-1))**beta
  actual = model.LocalResponseNormalization()(tf.constant(a))
  np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_initialization_follows_section_5(paper_model):
  for name in TRAINABLE_LAYERS:
    kernel = paper_model.get_layer(name).kernel.numpy()
    assert abs(kernel.mean()) < 1e-3, name
    # A truncated normal at two sigma would have a standard deviation of 0.0088.
    assert kernel.std() == pytest.approx(0.01, rel=0.03), name
  assert np.abs(paper_model.get_layer("fc6").kernel.numpy()).max() > 0.04
  for name in TRAINABLE_LAYERS:
    bias = paper_model.get_layer(name).bias.numpy()
    expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
    np.testing.assert_array_equal(bias, np.full_like(bias, expected), err_msg=name)


def test_dropout_acts_on_fc6_and_fc7_outputs_only_in_training(tiny_model):
  images = _images(2, seed=1)
  np.testing.assert_array_equal(tiny_model(images, training=False),
                                tiny_model(images, training=False))
  assert not np.allclose(tiny_model(images, training=True), tiny_model(images, training=True))
  probe = keras.Model(tiny_model.input,
                      [tiny_model.get_layer(name).output for name in ("relu6", "drop6")])
  before, after = (t.numpy() for t in probe(images, training=True))
  kept = after[before > 0] != 0
  assert 0.4 < kept.mean() < 0.6
  # Inverted dropout: the kept units are scaled by 1 / (1 - rate).
  np.testing.assert_allclose(after[after != 0], 2.0 * before[after != 0], rtol=1e-6)


def _grouped_reference(inputs, kernel, bias, groups, strides, padding):
  input_groups = np.split(inputs, groups, axis=-1)
  kernel_groups = np.split(kernel, groups, axis=-1)
  outputs = [tf.nn.conv2d(x, w, strides, padding) for x, w in zip(input_groups, kernel_groups)]
  return tf.concat(outputs, axis=-1) + bias


@pytest.mark.parametrize("strides, padding", [(1, "SAME"), (4, "VALID")])
def test_grouped_conv_matches_per_group_convolutions_and_keras(strides, padding):
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=[2, 15, 15, 6]).astype(np.float32)
  layer = model.GroupedConv2D(8, 3, strides, padding, groups=2)
  layer.build(inputs.shape)
  kernel = rng.normal(size=[3, 3, 3, 8]).astype(np.float32)
  bias = rng.normal(size=[8]).astype(np.float32)
  layer.set_weights([kernel, bias])
  ours = layer(inputs)

  np.testing.assert_allclose(ours, _grouped_reference(inputs, kernel, bias, 2, strides, padding),
                             rtol=1e-5, atol=1e-5)
  keras_conv = keras.layers.Conv2D(8, 3, strides, padding.lower(), groups=2)
  keras_conv.build(inputs.shape)
  keras_conv.set_weights([kernel, bias])
  np.testing.assert_allclose(ours, keras_conv(inputs), rtol=1e-5, atol=1e-5)
  assert ours.shape == layer.compute_output_shape(inputs.shape)


def test_mixed_bfloat16_policy_computes_in_bfloat16_with_float32_logits():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    net = model.alexnet(10, width=TINY_WIDTH)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert net.get_layer("conv2").compute_dtype == "bfloat16"
  assert net.get_layer("conv2").kernel.dtype == "float32"
  logits = net(_images(2), training=False)
  assert logits.dtype == tf.float32
  assert np.all(np.isfinite(logits))


def test_a_few_sgd_steps_lower_the_loss_and_update_every_layer():
  keras.utils.set_random_seed(0)
  net = model.alexnet(5, dropout=0.0, width=TINY_WIDTH)
  images = _images(8, seed=2)
  # At the paper's initialization the logits barely depend on the input, so a few steps can only
  # learn what all examples share; one label for the whole batch gives them something to learn.
  labels = tf.fill([8], 3)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
  initial_weights = [v.numpy() for v in net.trainable_variables]

  @tf.function
  def train_step():
    with tf.GradientTape() as tape:
      loss = loss_fn(labels, net(images, training=True))
    optimizer.apply_gradients(
        zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
    return loss

  initial_loss = float(train_step())
  for _ in range(4):
    train_step()
  assert float(loss_fn(labels, net(images, training=False))) < initial_loss / 2
  for variable, initial in zip(net.trainable_variables, initial_weights):
    assert np.any(variable.numpy() != initial), variable.path
