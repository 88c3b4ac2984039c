"""The learning curves of a training run, read from its TensorBoard event files and drawn.

`python -m train.plot` draws them to a file; the report embeds them.
Four panels against the training step: loss, top-1 error and top-5 error (training and validation),
and the learning rate on a log scale. Errors are `1 - accuracy` of the logged `train/top1`,
`eval/top1` etc.
"""

from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import collections
import io
import os

import matplotlib

matplotlib.use("Agg")  # no display: the figure only goes to a file

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.util import event_pb2

# The trainer writes `train/...` scalars under model_dir/train and `eval/...` under model_dir/eval.
EVENT_SUBDIRS = ("train", "eval")
EVENT_PATTERN = "events.out.tfevents.*"
DEFAULT_OUTPUT_NAME = "curves.png"


def _scalar_value(value):
  """The number in one summary value, or None for images, histograms and text."""
  if value.HasField("tensor"):  # TF2's tf.summary.scalar stores a rank-0 tensor
    array = tf.make_ndarray(value.tensor)
    return float(array) if array.ndim == 0 and array.dtype.kind in "fiu" else None
  return value.simple_value if value.HasField("simple_value") else None


def scalar_records(log_dir):
  """Every scalar of the event files in one directory, as `(wall_time, tag, step, value)`."""
  paths = sorted(tf.io.gfile.glob(os.path.join(log_dir, EVENT_PATTERN)))
  records = []
  for path in paths:
    try:
      for record in tf.data.TFRecordDataset(path):
        event = event_pb2.Event.FromString(record.numpy())
        for value in event.summary.value:
          number = _scalar_value(value)
          if number is not None:
            records.append((event.wall_time, value.tag, event.step, number))
    except tf.errors.DataLossError:
      # A run killed mid-write leaves a truncated last record; everything before it is valid.
      logging.warning("%s: truncated event file, using the events before the damage", path)
  return records


def read_scalars(log_dir):
  """Reads every scalar summary from the event files in one directory.

  A resumed run writes a new event file and logs again the steps since its last checkpoint; the
  value written last (by wall time) wins, so the curve follows the run that continued.

  Args:
    log_dir: a directory holding `events.out.tfevents.*` files (not searched recursively).

  Returns:
    `{tag: (steps, values)}` with int64 steps in increasing order and float64 values; empty if the
    directory holds no event files.
  """
  by_tag = collections.defaultdict(dict)
  for _, tag, step, number in sorted(scalar_records(log_dir), key=lambda record: record[0]):
    by_tag[tag][step] = number
  return {
      tag: (np.array(sorted(values),
                     np.int64), np.array([values[step] for step in sorted(values)],
                                         np.float64)) for tag, values in by_tag.items()
  }


def wall_time_span(log_dir):
  """Seconds from the first to the last scalar in a directory's event files (None if none).

  A resumed run's pause between its sessions is included.
  """
  times = [record[0] for record in scalar_records(log_dir)]
  return max(times) - min(times) if times else None


def read_curves(model_dir):
  """Reads the scalars of a model directory's training and evaluation event files.

  Args:
    model_dir: the trainer's `--model_dir`.

  Returns:
    `{tag: (steps, values)}` as from `read_scalars`, for tags such as `train/loss` and `eval/top1`.

  Raises:
    ValueError: if neither `train/` nor `eval/` holds an event file with a scalar.
  """
  scalars = {}
  for subdir in EVENT_SUBDIRS:
    scalars.update(read_scalars(os.path.join(model_dir, subdir)))
  if not scalars:
    raise ValueError(f"{model_dir}: no TensorBoard scalars in {'/ or '.join(EVENT_SUBDIRS)}/ "
                     "(has it been trained?)")
  return scalars


# (panel label, tag suffix, whether to plot 1 - value): errors, as the paper reports its results.
PANELS = (("cross-entropy loss", "loss", False), ("top-1 error", "top1", True), ("top-5 error",
                                                                                 "top5", True))
SPLIT_LABELS = (("train", "training"), ("eval", "validation"))


def learning_curves(scalars):
  """Selects and converts the series each panel of the figure shows.

  Args:
    scalars: `{tag: (steps, values)}` as from `read_curves`.

  Returns:
    `{panel label: [(legend label, steps, values)]}` for the loss and error panels and
    "learning rate"; a panel without data maps to an empty list.
  """
  curves = {}
  for panel, metric, as_error in PANELS:
    curves[panel] = []
    for split, legend in SPLIT_LABELS:
      if f"{split}/{metric}" in scalars:
        steps, values = scalars[f"{split}/{metric}"]
        curves[panel].append((legend, steps, 1.0 - values if as_error else values))
  curves["learning rate"] = []
  if "train/learning_rate" in scalars:
    curves["learning rate"].append(("training", *scalars["train/learning_rate"]))
  return curves


def output_format(output_path):
  """The image format an output file's extension names, if matplotlib can write it.

  Args:
    output_path: the file to write, e.g. `curves.pdf`.

  Returns:
    The format, e.g. "pdf".

  Raises:
    ValueError: naming the file and the formats there are, if the extension is not one of them.
  """
  extension = os.path.splitext(output_path)[1].lstrip(".").lower()
  supported = plt.figure().canvas.get_supported_filetypes()
  plt.close("all")
  if extension not in supported:
    named = f".{extension} files" if extension else "a file without an extension"
    choices = ", ".join(f".{name}" for name in sorted(supported))
    raise ValueError(f"{output_path}: matplotlib cannot write {named}; end the name with one of "
                     f"{choices}")
  return extension


def render_curves(scalars, title=None, image_format="png"):
  """Draws the learning curves (loss, top-1 and top-5 error, learning rate on a log scale).

  Args:
    scalars: `{tag: (steps, values)}` as from `read_curves`.
    title: optional figure title, e.g. the model directory.
    image_format: any format matplotlib writes ("png", "pdf", "svg", ...).

  Returns:
    The figure as bytes in that format.

  Raises:
    ValueError: if `scalars` holds none of the trainer's loss, accuracy or learning-rate tags.
  """
  curves = learning_curves(scalars)
  if not any(curves.values()):
    raise ValueError(f"no loss, accuracy or learning-rate scalars among {sorted(scalars)}")
  figure, panels = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
  for axes, (panel, series) in zip(panels.flat, curves.items()):
    for legend, steps, values in series:
      if panel == "learning rate":
        axes.plot(steps, values, drawstyle="steps-post")  # constant between changes
        axes.set_yscale("log")
      else:
        axes.plot(steps, values, "-" if legend == "training" else "o-", markersize=3, label=legend)
        axes.legend()
    axes.set_ylabel(panel)
    axes.grid(True, alpha=0.3)
  for axes in panels[1]:
    axes.set_xlabel("step")
  if title:
    figure.suptitle(title)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format=image_format, dpi=100)
  plt.close(figure)
  return buffer.getvalue()


def plot_curves(scalars, output_path, title=None):
  """Writes the learning curves: loss, top-1 and top-5 error, learning rate (log scale).

  Args:
    scalars: `{tag: (steps, values)}` as from `read_curves`.
    output_path: file to write (local or any filesystem `tf.io.gfile` supports), in the format its
      extension names (`.png`, `.pdf`, `.svg` and the others matplotlib writes).
    title: optional figure title, e.g. the model directory.

  Raises:
    ValueError: if `scalars` holds none of the trainer's loss, accuracy or learning-rate tags, the
      extension is not a format matplotlib writes, or the file cannot be written.
  """
  data = render_curves(scalars, title, output_format(output_path))
  # Rendered in memory and written through gfile, so --output can be a gs:// path too.
  try:
    with tf.io.gfile.GFile(output_path, "wb") as f:
      f.write(data)
  except tf.errors.OpError as err:
    raise ValueError(f"{output_path}: cannot write ({err.message})") from None
