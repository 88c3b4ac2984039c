r"""Learning on real photographs: each recipe's validation top-1/top-5 after every epoch, and its time.

  python -m benchmarks.bench_learning --input_dir ../shared/imagenette --work_dir /tmp/learning
  python -m benchmarks.bench_learning --shards DIR --work_dir DIR [--epochs 10] [--recipes paper,caffe]

Builds the dataset with stage 1 (or takes a built one), then trains every recipe for the same
number of epochs on the same shards: ours through `python -m train.main` with a flagfile, and
torchvision's AlexNet with pytorch/examples' recipe in PyTorch (benchmarks/torch_recipe.py). Every
recipe sees the whole training split once per epoch. Writes, in `--work_dir`:
  * `learning.json`: per recipe, its flags and each epoch's figures, with the machine and the date;
  * `learning.md`: the table of validation top-1 / top-5 and cumulative wall time after every epoch;
  * `learning.png`: top-1 against epochs and against wall time.
A recipe's figures are saved as soon as it stops (finished, dead or interrupted), and both kinds of
run resume from their checkpoints: a rerun with the same flags skips what was measured and goes on
where it stopped, so the table grows across sessions. Compare wall times only between epochs
measured on the same machine in the same session (the `machine` and `date` of each row). Run by
hand; not part of the tests (a learning run on 2 CPU cores takes minutes per epoch).
"""

from common import dataset as dataset_lib
from common import quiet  # noqa: F401  (first: it acts before TensorFlow is imported)

import datetime
import json
import os
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging

from benchmarks import torch_recipe
from common import manifest as manifest_lib
from train.report import curves

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Our recipes: train.main's arguments. "paper_warmup" ramps the paper's rate over 500 steps.
RECIPES = {
    "paper": ["--flagfile=train/alexnet.flags"],
    "caffe": ["--flagfile=train/caffe.flags"],
    "paper_warmup": ["--flagfile=train/alexnet.flags", "--warmup_steps=500"],
    # Caffe's recipe at the paper's batch of 128: twice the updates per epoch.
    "caffe_batch128": ["--flagfile=train/caffe.flags", "--batch_size=128"],
    "imagenette": ["--flagfile=train/imagenette.flags"],
    "imagenette_bf16": ["--flagfile=train/imagenette.flags", "--precision=bf16"],
}
TORCHVISION = "torchvision"


def machine():
  """The processor's name and core count, as each row records them."""
  name = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{name}, {os.cpu_count()} cores"


def load_results(path):
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def save_results(results, path):
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)


def _evaluations(model_dir):
  """{step: {"wall", "top1", "top5", "loss"}} of the validations in a model directory so far."""
  by_step = {}
  try:
    records = curves.scalar_records(os.path.join(model_dir, "eval"))
  except (OSError, ValueError):  # no event file yet
    return by_step
  for wall, tag, step, value in records:
    entry = by_step.setdefault(step, {"wall": wall})
    entry["wall"] = max(entry["wall"], wall)
    entry[tag.split("/")[-1]] = value
  return by_step


def run_ours(name, args, shards, work_dir, epochs, recipe, record):
  """Trains one of our recipes up to `epochs` (resuming), recording each epoch as it is validated.

  The validations are read from the run's event files every few seconds, so a benchmark stopped
  mid-recipe keeps every epoch it finished. An epoch's seconds run from the previous validation
  (or this run's start, after a resume: the time spent before the interruption is not counted).
  """
  model_dir = os.path.join(work_dir, name)
  started = time.time()
  done = {row["step"] for row in recipe["epochs"]}
  previous = [started]

  def collect():
    for step, entry in sorted(_evaluations(model_dir).items()):
      if step in done:
        continue
      done.add(step)
      # A validation from before this run's start (one the killed benchmark never read) has no
      # time of its own here.
      seconds = entry["wall"] - previous[0] if entry["wall"] >= previous[0] else None
      record(
          name, {
              "top1": entry.get("top1"), "top5": entry.get("top5"), "loss": entry.get("loss"),
              "step": step, "seconds": seconds
          })
      previous[0] = max(previous[0], entry["wall"])

  log_path = os.path.join(work_dir, f"{name}.log")
  with open(log_path, "a") as log:
    process = subprocess.Popen([
        sys.executable, "-m", "train.main", *args, f"--shards={shards}", f"--model_dir={model_dir}",
        f"--epochs={epochs}", f"--seed={FLAGS.seed}"
    ], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    while process.poll() is None:
      time.sleep(10)
      collect()
  collect()
  with open(log_path) as f:
    lines = f.read().splitlines()
  if process.returncode:
    errors = [line for line in lines if line.startswith("E") or "is dead" in line]
    logging.warning("%s stopped with exit %d: %s", name, process.returncode,
                    errors[-1] if errors else lines[-1] if lines else "")
    return "dead" if any("is dead" in line for line in errors) else "stopped"
  return "finished"


def write_table(results, path):
  """learning.md: one row per recipe and epoch."""
  rows = [
      "| recipe | epoch | top-1 | top-5 | wall time (cumulative) | load (5 min) | machine "
      "| date |", "| --- | --- | --- | --- | --- | --- | --- | --- |"
  ]
  for name, recipe in sorted(results.items()):
    total = 0.0
    for row in recipe["epochs"]:
      total += row["seconds"] or 0.0
      rows.append(f"| {name} | {row['epoch']} | {row['top1']:.4f} | {row['top5']:.4f} | "
                  f"{total / 60:.1f} min | {row.get('load', float('nan')):.1f} | "
                  f"{row['machine']} | {row['date']} |")
    if recipe.get("ended") == "dead":
      rows.append(f"| {name} | - | the network died (see {name}.log) | | | | | |")
  with open(path, "w") as f:
    f.write("\n".join(rows) + "\n")


def write_plot(results, path):
  """learning.png: validation top-1 against epochs and against cumulative wall time."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
  figure, (by_epoch, by_time) = pyplot.subplots(1, 2, figsize=(11, 4))
  for name, recipe in sorted(results.items()):
    epochs = [row["epoch"] for row in recipe["epochs"]]
    top1 = [row["top1"] for row in recipe["epochs"]]
    minutes, total = [], 0.0
    for row in recipe["epochs"]:
      total += row["seconds"] or 0.0
      minutes.append(total / 60)
    by_epoch.plot(epochs, top1, marker="o", label=name)
    by_time.plot(minutes, top1, marker="o", label=name)
  by_epoch.set(xlabel="epoch", ylabel="validation top-1", title="per epoch")
  by_time.set(xlabel="wall time (min)", ylabel="validation top-1", title="per minute")
  by_epoch.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  pyplot.close(figure)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  shards = FLAGS.shards or os.path.join(FLAGS.work_dir, "shards")
  if not FLAGS.shards and not os.path.exists(os.path.join(shards, manifest_lib.MANIFEST_NAME)):
    subprocess.run([
        sys.executable, "-m", "preprocess.build_shards", f"--input_dir={FLAGS.input_dir}",
        f"--output_dir={shards}"
    ], cwd=REPO, check=True)
  manifest = dataset_lib.load(shards)
  results_path = os.path.join(FLAGS.work_dir, "learning.json")
  results = load_results(results_path)
  for name in FLAGS.recipes:
    args = RECIPES.get(name, torch_recipe.RECIPE if name == TORCHVISION else None)
    if args is None:
      raise app.UsageError(f"--recipes: unknown recipe {name!r}; known: "
                           f"{', '.join([*RECIPES, TORCHVISION])}")
    described = args if isinstance(args, list) else [f"{k}={v}" for k, v in sorted(args.items())]
    recipe = results.get(name)
    if recipe is None or recipe["flags"] != described:
      recipe = results[name] = {"flags": described, "epochs": []}
    if len(recipe["epochs"]) >= FLAGS.epochs or recipe.get("ended") == "dead":
      logging.info("%s: measured already (%d epochs)", name, len(recipe["epochs"]))
      continue

    def record(recipe_name, row, recipe=recipe):
      row.update(epoch=len(recipe["epochs"]) + 1, machine=machine(), load=os.getloadavg()[1],
                 date=datetime.date.today().isoformat())
      recipe["epochs"].append(row)
      logging.info("%s epoch %d: top-1 %.4f top-5 %.4f, %s s", recipe_name, row["epoch"],
                   row["top1"], row["top5"], row["seconds"])
      save_results(results, results_path)

    if name == TORCHVISION:
      torch_recipe.train_epochs(
          manifest, os.path.join(FLAGS.work_dir, name), FLAGS.epochs, FLAGS.seed,
          lambda epoch, metrics, seconds: record(name, {**metrics, "seconds": seconds}))
      recipe["ended"] = "finished"
    else:
      recipe["ended"] = run_ours(name, args, shards, FLAGS.work_dir, FLAGS.epochs, recipe, record)
    save_results(results, results_path)
  write_table(results, os.path.join(FLAGS.work_dir, "learning.md"))
  write_plot(results, os.path.join(FLAGS.work_dir, "learning.png"))
  print(open(os.path.join(FLAGS.work_dir, "learning.md")).read())


def define_flags():
  """Defines the flags, only when run as a command, like every entry module."""
  flags.DEFINE_string("input_dir", None,
                      "An ImageNet tree to build with stage 1 (e.g. Imagenette).")
  flags.DEFINE_string("shards", None, "A dataset built already (instead of --input_dir).")
  flags.DEFINE_string("work_dir", None, "Where the models, results, table and plot go.")
  flags.DEFINE_integer("epochs", 10, "Epochs of every recipe.", lower_bound=1)
  flags.DEFINE_list("recipes", [*RECIPES, TORCHVISION], "Recipes to run, in this order.")
  flags.DEFINE_integer("seed", 0, "Seed of every recipe.", lower_bound=0)
  flags.mark_flag_as_required("work_dir")
  flags.register_validator("input_dir", lambda _: bool(FLAGS.input_dir) != bool(FLAGS.shards),
                           "give one of --input_dir and --shards")


if __name__ == "__main__":
  define_flags()
  app.run(main)
