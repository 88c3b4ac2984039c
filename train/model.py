"""AlexNet as in Krizhevsky, Sutskever and Hinton (2012), as a Keras 3 functional model.

The network is the paper's, layer for layer: five convolutions (the second, fourth and fifth split
into two "towers", one per GPU in the paper, here `groups`), local response normalization after the
first two, overlapping max pooling, two 4096-unit fully connected layers with dropout, and a linear
classifier whose logits go to a softmax cross-entropy loss that applies the softmax itself.

The trainable layers are named `conv1`..`conv5` and `fc6`..`fc8`, and each holds exactly one `kernel`
and one `bias`, so weights can be matched by name with another implementation.
"""

import keras
import tensorflow as tf

from train.input_pipeline import CROP_SIZE  # The input side, 227 (why not 224: see there).

# The paper's local response normalization (section 3.3): k=2, n=5, alpha=1e-4, beta=0.75, i.e.
#   b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta.
# TensorFlow's LRN sums over 2 * depth_radius + 1 = 5 channels and, like the paper's formula, does not
# divide alpha by n, so the paper's numbers carry over unchanged. Caffe's (and PyTorch's) LRN divide
# alpha by n; their published alpha=1e-4 is therefore a different, weaker normalization.
LRN_DEPTH_RADIUS = 2
LRN_BIAS = 2.0
LRN_ALPHA = 1e-4
LRN_BETA = 0.75

# Section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fully connected
# layers (to give the ReLUs positive inputs early on), 0 elsewhere.
WEIGHT_STDDEV = 0.01
BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")
# The starting value of those biases: "paper" is section 5's 1; "caffe" is BVLC's bvlc_alexnet
# (Caffe PR #327 lowered it to 0.1 because 1 gave a flat loss).
POSITIVE_BIAS = {"paper": 1.0, "caffe": 0.1}
# The weights' standard deviation where it departs from WEIGHT_STDDEV, by `weight_init`: bvlc_alexnet
# draws fc6 and fc7 from N(0, 0.005) (its train_val.prototxt), every other layer as the paper does.
WEIGHT_STDDEV_OF = {"paper": {}, "caffe": {"fc6": 0.005, "fc7": 0.005}}
# The ReLU layers, in the order of the network; `with_activations` returns their outputs.
RELU_LAYERS = ("relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7")


@keras.saving.register_keras_serializable(package="alexnet")
class GroupedConv2D(keras.layers.Layer):
  """A 2-D convolution whose input and output channels are split into independent groups.

  It holds one kernel of shape `[kernel_size, kernel_size, in_channels / groups, filters]` and one
  bias, the same variables as `keras.layers.Conv2D(groups=groups)`, but computes each group as its own
  `tf.nn.conv2d` and concatenates the results. On CPU with TF 2.21 that trains about three times
  faster than Keras' grouped `Conv2D` (see `benchmarks/bench_train_step.py`). `groups=1` is an
  ordinary convolution. Weights are drawn from N(0, `WEIGHT_STDDEV`), as for every AlexNet layer.

  Args:
    filters: output channels, a multiple of `groups`.
    kernel_size: side of the square kernel.
    strides: stride in both spatial dimensions.
    padding: "VALID" or "SAME", as for `tf.nn.conv2d`.
    groups: number of independent channel groups; input channels must also divide by it.
    bias_value: the constant every bias starts at.
    **kwargs: `keras.layers.Layer` arguments such as `name` and `dtype`.
  """

  def __init__(self, filters, kernel_size, strides=1, padding="VALID", groups=1, bias_value=0.0,
               **kwargs):
    super().__init__(**kwargs)
    if filters % groups:
      raise ValueError(f"{self.name}: {filters} filters do not split into {groups} groups")
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides
    self.padding = padding
    self.groups = groups
    self.bias_value = bias_value

  def build(self, input_shape):
    in_channels = input_shape[-1]
    if in_channels % self.groups:
      raise ValueError(f"{self.name}: {in_channels} input channels do not split into "
                       f"{self.groups} groups")
    self.kernel = self.add_weight(
        name="kernel",
        shape=(self.kernel_size, self.kernel_size, in_channels // self.groups, self.filters),
        initializer=keras.initializers.RandomNormal(stddev=WEIGHT_STDDEV))
    self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                initializer=keras.initializers.Constant(self.bias_value))

  def call(self, inputs):
    kernel = tf.cast(self.kernel, self.compute_dtype)
    input_groups = tf.split(inputs, self.groups, axis=-1)
    kernel_groups = tf.split(kernel, self.groups, axis=-1)
    outputs = [
        tf.nn.conv2d(group_input, group_kernel, self.strides, self.padding)
        for group_input, group_kernel in zip(input_groups, kernel_groups)
    ]
    outputs = outputs[0] if self.groups == 1 else tf.concat(outputs, axis=-1)
    return tf.nn.bias_add(outputs, tf.cast(self.bias, self.compute_dtype))

  def compute_output_shape(self, input_shape):
    batch, height, width, _ = input_shape
    if self.padding == "SAME":
      height, width = -(-height // self.strides), -(-width // self.strides)
    else:
      height = (height - self.kernel_size) // self.strides + 1
      width = (width - self.kernel_size) // self.strides + 1
    return (batch, height, width, self.filters)

  def get_config(self):
    return {
        **super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
        "strides": self.strides, "padding": self.padding, "groups": self.groups,
        "bias_value": self.bias_value
    }


@keras.saving.register_keras_serializable(package="alexnet")
class LocalResponseNormalization(keras.layers.Layer):
  """The paper's across-channel local response normalization (see `LRN_*` above)."""

  def call(self, inputs):
    # TF's CPU LRN kernel has no bfloat16 version, and the squared sum is better kept in float32.
    normalized = tf.nn.local_response_normalization(tf.cast(inputs, tf.float32),
                                                    depth_radius=LRN_DEPTH_RADIUS, bias=LRN_BIAS,
                                                    alpha=LRN_ALPHA, beta=LRN_BETA)
    return tf.cast(normalized, self.compute_dtype)

  def compute_output_shape(self, input_shape):
    return input_shape


def seed_states(model):
  """The model's random-seed variables (its dropout layers'), which `model.weights` leaves out;
  checkpointed so that a resumed run draws the dropout masks an uninterrupted one would."""
  return [v for v in model.variables if all(v is not weight for weight in model.weights)]


def _scaled(units, width, groups):
  """`units * width`, rounded to a positive multiple of `groups` so every layer splits evenly."""
  return groups * max(1, round(units * width / groups))


def with_activations(model):
  """The same network (the same layers and weights), returning `(logits, activations)`:
  `activations` maps each of `RELU_LAYERS` to its output `[batch, ..., units]`, before dropout.
  Computing them costs nothing more: the backward pass keeps them anyway."""
  return keras.Model(model.input,
                     (model.output, {name: model.get_layer(name).output for name in RELU_LAYERS}),
                     name=f"{model.name}_with_activations")


def alexnet(num_classes, groups=2, dropout=0.5, width=1.0, bias_init="paper", weight_init="paper"):
  """Builds AlexNet, taking 227x227x3 mean-subtracted float32 pixels (NHWC) to logits.

  Shapes: 227 -> conv1 55 -> pool 27 -> conv2 27 -> pool 13 -> conv3, conv4, conv5 13 -> pool 6 ->
  flatten 9216 -> fc6 4096 -> fc7 4096 -> fc8 `num_classes`. With `groups=2`, `width=1` and 1000
  classes it has 60,965,224 parameters.

  Under a mixed-precision policy the layers compute in the policy's compute dtype, but the logits
  are cast to float32 so that the loss is computed in float32.

  Args:
    num_classes: number of output logits.
    groups: towers that conv2, conv4 and conv5 are split into; 2 is the paper's two-GPU network,
      1 the one-tower variant. conv3 always sees all of conv2's channels, as in the paper.
    dropout: rate applied to the outputs of fc6 and fc7 (after their ReLU) during training only.
    width: multiplier on every layer's channel or unit count except fc8's, e.g. 0.25 for a narrow
      network that trains quickly on a CPU; 1.0 is the paper's network.
    bias_init: a key of `POSITIVE_BIAS`: the starting bias of conv2, conv4, conv5, fc6 and fc7.
    weight_init: a key of `WEIGHT_STDDEV_OF`: "paper" draws every weight from N(0, 0.01),
      "caffe" those of fc6 and fc7 from N(0, 0.005).

  Returns:
    An uncompiled `keras.Model` named "alexnet" whose output is float32 logits `[batch, num_classes]`.

  Raises:
    ValueError: if `num_classes` or `groups` is below 1, `width` is not positive, `dropout` is
      outside [0, 1), or `bias_init` or `weight_init` is unknown.
  """
  if num_classes < 1:
    raise ValueError(f"alexnet: num_classes must be at least 1, got {num_classes}")
  if groups < 1:
    raise ValueError(f"alexnet: groups must be at least 1, got {groups}")
  if width <= 0:
    raise ValueError(f"alexnet: width must be positive, got {width}")
  if not 0 <= dropout < 1:
    raise ValueError(f"alexnet: dropout must be in [0, 1), got {dropout}")
  if bias_init not in POSITIVE_BIAS:
    raise ValueError(f"alexnet: bias_init must be one of {sorted(POSITIVE_BIAS)}, got "
                     f"{bias_init!r}")
  if weight_init not in WEIGHT_STDDEV_OF:
    raise ValueError(f"alexnet: weight_init must be one of {sorted(WEIGHT_STDDEV_OF)}, got "
                     f"{weight_init!r}")
  positive_bias = POSITIVE_BIAS[bias_init]
  stddev_of = WEIGHT_STDDEV_OF[weight_init]

  def conv(x, name, filters, kernel_size, strides=1, padding="SAME", conv_groups=1):
    # For the stride-1 layers SAME is the paper's symmetric padding of (kernel_size - 1) / 2.
    x = GroupedConv2D(_scaled(filters, width, groups), kernel_size, strides, padding, conv_groups,
                      bias_value=positive_bias if name in BIAS_ONE_LAYERS else 0.0, name=name)(x)
    return keras.layers.ReLU(name=f"relu{name[-1]}")(x)

  def dense(x, name, units):
    return keras.layers.Dense(
        units, name=name, kernel_initializer=keras.initializers.RandomNormal(
            stddev=stddev_of.get(name, WEIGHT_STDDEV)),
        bias_initializer=keras.initializers.Constant(positive_bias if name in
                                                     BIAS_ONE_LAYERS else 0.0))(x)

  def pool(x, name):
    # Overlapping pooling (section 3.4): 3x3 windows every 2 pixels.
    return keras.layers.MaxPooling2D(pool_size=3, strides=2, padding="valid", name=name)(x)

  images = keras.Input(shape=(CROP_SIZE, CROP_SIZE, 3), dtype="float32", name="image")
  x = conv(images, "conv1", 96, 11, strides=4, padding="VALID")
  x = pool(LocalResponseNormalization(name="norm1")(x), "pool1")
  x = conv(x, "conv2", 256, 5, conv_groups=groups)
  x = pool(LocalResponseNormalization(name="norm2")(x), "pool2")
  x = conv(x, "conv3", 384, 3)
  x = conv(x, "conv4", 384, 3, conv_groups=groups)
  x = conv(x, "conv5", 256, 3, conv_groups=groups)
  x = keras.layers.Flatten(name="flatten")(pool(x, "pool5"))
  for name in ("fc6", "fc7"):
    x = keras.layers.ReLU(name=f"relu{name[-1]}")(dense(x, name, _scaled(4096, width, 1)))
    x = keras.layers.Dropout(dropout, name=f"drop{name[-1]}")(x)
  logits = dense(x, "fc8", num_classes)
  logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
  return keras.Model(images, logits, name="alexnet")
