"""Training throughput of the paper's AlexNet on this machine, against PyTorch on the same CPU.

Times SGD steps (momentum 0.9, softmax cross-entropy) on one in-memory synthetic batch, after
warm-up steps that absorb tracing and compilation, for:
  * our model, whose grouped convolutions (`train.model.GroupedConv2D`) run one `tf.nn.conv2d` per
    group, with XLA off and on;
  * the same model with Keras' `Conv2D(groups=...)` in their place (same weights), XLA off and on;
  * the same architecture in PyTorch (`nn.Conv2d(groups=2)`), if torch is installed
    (`pip install -r requirements-bench.txt`).

Run by hand: `python -m benchmarks.bench_train_step [--batch_size=32 --steps=5 --warmup=2]`. Figures
from a CPU shared with other processes are indicative only.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import os
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from train import input_pipeline
from train import model as model_lib

NUM_CLASSES = 1000  # ImageNet's; only the size of fc8 depends on it.
LEARNING_RATE = 0.01
MOMENTUM = 0.9

FLAGS = flags.FLAGS


def keras_grouped_conv_twin(model):
  """Returns a copy of `model` with Keras `Conv2D(groups=...)` layers in place of `GroupedConv2D`.

  Args:
    model: a model from `train.model.alexnet`.

  Returns:
    A new `keras.Model` with the same layer names and the same weights.
  """

  def clone_layer(layer):
    if not isinstance(layer, model_lib.GroupedConv2D):
      return layer.__class__.from_config(layer.get_config())
    return keras.layers.Conv2D(layer.filters, layer.kernel_size, layer.strides,
                               layer.padding.lower(), groups=layer.groups, name=layer.name)

  twin = keras.models.clone_model(model, clone_function=clone_layer)
  twin.set_weights(model.get_weights())
  return twin


def time_keras_training(model, images, labels, jit_compile, steps, warmup):
  """Trains `model` on one batch and returns the timed steps' images per second.

  Args:
    model: a Keras model producing logits.
    images: the input batch.
    labels: `[batch]` int labels.
    jit_compile: whether to compile the step with XLA.
    steps: timed steps.
    warmup: untimed steps run first.

  Returns:
    Images per second over the timed steps.
  """
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=MOMENTUM)
  optimizer.build(model.trainable_variables)

  @tf.function(jit_compile=jit_compile)
  def train_step():
    with tf.GradientTape() as tape:
      loss = loss_fn(labels, model(images, training=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss

  return _images_per_second(lambda: float(train_step()), int(images.shape[0]), steps, warmup)


def _images_per_second(run_step, batch_size, steps, warmup):
  """Runs `warmup` then `steps` steps; `run_step` must block until its step is done."""
  for _ in range(warmup):
    run_step()
  start = time.perf_counter()
  for _ in range(steps):
    run_step()
  return batch_size * steps / (time.perf_counter() - start)


def torch_alexnet(num_classes):
  """The paper's two-tower AlexNet in PyTorch, initialized as in section 5 (imports torch)."""
  from torch import nn  # pylint: disable=import-outside-toplevel

  def lrn():
    # PyTorch divides alpha by `size`; 5 * 1e-4 gives TensorFlow's and the paper's alpha of 1e-4.
    return nn.LocalResponseNorm(size=5, alpha=5 * model_lib.LRN_ALPHA, beta=model_lib.LRN_BETA,
                                k=model_lib.LRN_BIAS)

  layers = {
      "conv1": nn.Conv2d(3, 96, 11, stride=4),
      "conv2": nn.Conv2d(96, 256, 5, padding=2, groups=2),
      "conv3": nn.Conv2d(256, 384, 3, padding=1),
      "conv4": nn.Conv2d(384, 384, 3, padding=1, groups=2),
      "conv5": nn.Conv2d(384, 256, 3, padding=1, groups=2),
      "fc6": nn.Linear(256 * 6 * 6, 4096),
      "fc7": nn.Linear(4096, 4096),
      "fc8": nn.Linear(4096, num_classes),
  }
  for name, layer in layers.items():
    nn.init.normal_(layer.weight, std=model_lib.WEIGHT_STDDEV)
    nn.init.constant_(layer.bias, 1.0 if name in model_lib.BIAS_ONE_LAYERS else 0.0)

  def pool():
    return nn.MaxPool2d(kernel_size=3, stride=2)

  return nn.Sequential(layers["conv1"], nn.ReLU(), lrn(), pool(), layers["conv2"], nn.ReLU(), lrn(),
                       pool(), layers["conv3"], nn.ReLU(), layers["conv4"], nn.ReLU(),
                       layers["conv5"], nn.ReLU(), pool(), nn.Flatten(), layers["fc6"], nn.ReLU(),
                       nn.Dropout(0.5), layers["fc7"], nn.ReLU(), nn.Dropout(0.5), layers["fc8"])


def time_torch_training(images, labels, steps, warmup):
  """Like `time_keras_training` for `torch_alexnet`; images are NHWC NumPy and are transposed."""
  import torch  # pylint: disable=import-outside-toplevel

  net = torch_alexnet(NUM_CLASSES).train()
  optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
  loss_fn = torch.nn.CrossEntropyLoss()
  torch_images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  torch_labels = torch.from_numpy(labels.astype(np.int64))

  def train_step():
    optimizer.zero_grad()
    loss = loss_fn(net(torch_images), torch_labels)
    loss.backward()
    optimizer.step()
    return loss.item()

  return _images_per_second(train_step, len(images), steps, warmup)


def run_benchmark(batch_size, steps, warmup):
  """Times every variant and returns `(name, images per second or None, note)` rows."""
  rng = np.random.default_rng(0)
  size = input_pipeline.CROP_SIZE
  images = rng.normal(0.0, 60.0, [batch_size, size, size, 3]).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
  ours = model_lib.alexnet(NUM_CLASSES)
  keras_twin = keras_grouped_conv_twin(ours)
  rows = []
  for name, model in (("ours, GroupedConv2D", ours), ("Keras Conv2D(groups=2)", keras_twin)):
    for jit_compile in (False, True):
      label = f"{name}, XLA {'on' if jit_compile else 'off'}"
      logging.info("Timing %s", label)
      try:
        rate = time_keras_training(model, tf.constant(images), tf.constant(labels), jit_compile,
                                   steps, warmup)
        rows.append((label, rate, ""))
      except tf.errors.OpError as error:
        rows.append((label, None, f"failed: {type(error).__name__}"))
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    rows.append(("PyTorch nn.Conv2d(groups=2)", None,
                 "skipped: torch is not installed (pip install -r requirements-bench.txt)"))
  else:
    logging.info("Timing PyTorch %s with %d threads", torch.__version__, torch.get_num_threads())
    rows.append((f"PyTorch {torch.__version__} nn.Conv2d(groups=2)",
                 time_torch_training(images, labels, steps, warmup), ""))
  return rows


def format_table(rows):
  """Renders the rows with a ratio column against the PyTorch row, when there is one."""
  torch_rate = next((rate for name, rate, _ in rows if name.startswith("PyTorch")), None)
  lines = [f"{'variant':<42} {'images/s':>9} {'/PyTorch':>9}"]
  for name, rate, note in rows:
    if rate is None:
      lines.append(f"{name:<42} {'-':>9} {'':>9}  {note}")
      continue
    ratio = f"{rate / torch_rate:.2f}" if torch_rate else "-"
    lines.append(f"{name:<42} {rate:>9.1f} {ratio:>9}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  rows = run_benchmark(FLAGS.batch_size, FLAGS.steps, FLAGS.warmup)
  print(f"AlexNet training step, batch {FLAGS.batch_size}, {input_pipeline.CROP_SIZE}x"
        f"{input_pipeline.CROP_SIZE}, {NUM_CLASSES} classes, {FLAGS.steps} timed steps after "
        f"{FLAGS.warmup} warm-up steps, {os.cpu_count()} CPUs")
  print(format_table(rows))


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_integer("batch_size", 32, "Images per training step.", lower_bound=1)
  flags.DEFINE_integer("steps", 5, "Timed steps per variant.", lower_bound=1)
  flags.DEFINE_integer("warmup", 2, "Untimed steps per variant before timing.", lower_bound=1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
