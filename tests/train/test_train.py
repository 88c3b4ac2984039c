"""Tests of the trainer: train.py, model_dir, checkpoints, schedule, progress, on tiny data."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from common import manifest as manifest_lib
from train import config as config_lib
from train.errors import NonFiniteError
from train.errors import TrainingError
from train import input_pipeline
from train import model as model_lib
from train.model_dir import checkpoints as checkpoints_lib
from train.model_dir import directory as model_dir_lib
from train import preparation
from train.run import progress as progress_lib
from train.run import schedule
from train.run import summaries
from train.run import train

from tests.train.conftest import TINY_CONFIG

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 18 training images in batches of 4: 4 steps per epoch; 9 validation images: a partial last batch.
STEPS_PER_EPOCH = 4


def _config(**overrides):
  return config_lib.Config(**{**TINY_CONFIG, **overrides})


def _prep(manifest):
  return preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)


def _read_scalars(directory):
  values = {}
  for path in tf.io.gfile.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
  return values


def _checkpoint_steps(directory):
  state = tf.train.get_checkpoint_state(directory)
  return sorted(int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths)


@pytest.fixture
def trained_copy(trained_dir, tmp_path):
  return shutil.copytree(trained_dir, str(tmp_path / "model"))


def test_training_writes_config_mean_checkpoints_and_summaries(trained_dir, dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  with open(os.path.join(trained_dir, "config.json")) as f:
    config = json.load(f)
  assert config["model"] == {"num_classes": 3, "groups": 2, "width": 0.0625, "dropout": 0.5}
  assert config["classes"] == manifest.data["classes"]
  assert (config["image_size"], config["input_size"]) == (256, 227)
  assert config["stats"] == manifest.stats and config["flags"]["batch_size"] == 4
  np.testing.assert_array_equal(np.load(os.path.join(trained_dir, "mean.npy")),
                                manifest.mean_image())
  assert _checkpoint_steps(os.path.join(trained_dir, "ckpt")) == [STEPS_PER_EPOCH]
  assert _checkpoint_steps(os.path.join(trained_dir, "best")) == [STEPS_PER_EPOCH]
  train_scalars = _read_scalars(os.path.join(trained_dir, "train"))
  assert set(train_scalars) == {"train/loss", "train/top1", "train/top5", "train/learning_rate",
                                "perf/images_per_sec"} | {
                                    f"train/silent_units/{layer}" for layer in
                                    ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")}
  assert len(train_scalars["train/loss"]) == STEPS_PER_EPOCH
  assert train_scalars["train/learning_rate"] == [pytest.approx(0.01)] * STEPS_PER_EPOCH
  assert set(_read_scalars(os.path.join(trained_dir, "eval"))) == {"eval/loss", "eval/top1",
                                                                   "eval/top5"}
  assert not os.path.exists(os.path.join(trained_dir, model_dir_lib.LOCK_NAME))


def test_train_steps_lower_the_loss(dataset_dir):
  manifest = dataset_lib.load(dataset_dir)
  # The paper's network at full width: with its N(0, 0.01) init a narrow one carries almost no
  # signal from the pixels to the logits, and its loss sits at ln(3) for hundreds of steps.
  config = _config(width=1.0, dropout=0.0, learning_rate=0.0001, batch_size=6)
  tf.keras.utils.set_random_seed(0)
  model = model_lib.alexnet(manifest.num_classes, config.groups, config.dropout, config.width)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  batch = next(iter(input_pipeline.make_dataset(manifest, "train", batch_size=6, training=False)))
  step = tf.function(lambda b: train.train_step(model, optimizer, b, _prep(manifest), config,
                                                state["rng"]))
  losses = [float(step(batch)[0]) / 6 for _ in range(12)]
  assert np.mean(losses[-4:]) < 0.85 * losses[0], losses


def test_plateau_divides_the_rate_by_ten_after_patience_at_most_max_drops_times():
  config = _config(patience=2, max_lr_drops=2)
  state = schedule.create_state(config)
  rates, best = [], []
  for error in (0.9, 0.8, 0.8, 0.85, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7):
    best.append(schedule.update_on_validation(config, state, error))
    rates.append(round(float(state["learning_rate"].numpy()), 8))
  assert best == [True, True, False, False, True] + [False] * 5
  assert rates == [0.01] * 3 + [0.001] * 3 + [0.0001] * 4
  assert float(state["best_val_error"].numpy()) == 0.7


def test_step_schedule_divides_the_rate_by_ten_at_each_boundary():
  config = _config(lr_schedule="step", lr_step_epochs=(2, 4))
  rates = [schedule.step_schedule_rate(config, epoch) for epoch in range(6)]
  np.testing.assert_allclose(rates, [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_weight_decay_follows_the_papers_update_rule(dataset_dir):
  """v <- 0.9 v - wd * lr * w - lr * grad; w <- w + v, with the decay on kernels only."""
  manifest = dataset_lib.load(dataset_dir)
  config = _config(weight_decay=0.5, learning_rate=0.1)
  model = model_lib.alexnet(manifest.num_classes, config.groups, 0.0, config.width)
  state = schedule.create_state(config)
  optimizer = train.create_optimizer(config, state["learning_rate"])
  batch = next(iter(input_pipeline.make_dataset(manifest, "train", batch_size=4, training=False)))
  images = preparation.prepare_batch(batch, _prep(manifest), training=True,
                                        rng=tf.random.Generator.from_seed(7))
  with tf.GradientTape() as tape:
    logits = model(images, training=True)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label"], logits))
  grads = {v.path: g.numpy() for v, g in zip(model.trainable_variables,
                                             tape.gradient(loss, model.trainable_variables))}
  before = {v.path: v.numpy() for v in model.trainable_variables}
  train.train_step(model, optimizer, batch, _prep(manifest), config,
                   tf.random.Generator.from_seed(7))
  for variable in model.trainable_variables:
    decay = config.weight_decay * before[variable.path] if variable.path.endswith("kernel") else 0
    expected = before[variable.path] - 0.1 * (grads[variable.path] + decay)
    np.testing.assert_allclose(variable.numpy(), expected, atol=1e-5, err_msg=variable.path)


def test_resume_continues_from_the_saved_step_and_learning_rate(trained_copy, dataset_dir,
                                                                caplog):
  manifest = dataset_lib.load(dataset_dir)
  caplog.set_level(logging.INFO, logger="absl")
  train.train_and_evaluate(_config(epochs=2, log_every=2), manifest, trained_copy)
  assert _checkpoint_steps(os.path.join(trained_copy, "ckpt")) == [4, 8]
  text = caplog.text
  assert "Resumed from" in text and "at step 4" in text
  assert "Batch: 1/4" in text and "Epoch: 2" in text and "Epoch: 1 " not in text
  assert "LR: 0.01 " in text
  # Settings that may change are logged and recorded: config.json says what the run used.
  assert "Resuming with --epochs=2 (was 1)" in text
  assert "Resuming with --log_every=2 (was 1)" in text
  with open(os.path.join(trained_copy, "config.json")) as f:
    assert json.load(f)["flags"]["epochs"] == 2
  reader = tf.train.load_checkpoint(os.path.join(trained_copy, "ckpt"))
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 8
  assert reader.get_tensor("learning_rate/.ATTRIBUTES/VARIABLE_VALUE") == pytest.approx(0.01)
  # The closing line: why it stopped, where, the last validation, and where the models are.
  closing = [line for line in text.splitlines() if "Stopped (" in line]
  assert len(closing) == 1 and "Stopped (reached --epochs=2) at step 8 (epoch 2, batch 4/4)" in (
      closing[0])
  assert "last validation at step 8: top-1 error" in closing[0] and "on 9 images" in closing[0]
  assert os.path.join(trained_copy, "ckpt", "ckpt-8") in closing[0]
  assert os.path.join(trained_copy, "best", "ckpt-") in closing[0]


@pytest.mark.parametrize("overrides, flag, values", [
    (dict(learning_rate=0.5), "learning_rate", ("0.5", "0.01")),
    (dict(batch_size=2), "batch_size", ("2", "4")),
    (dict(momentum=0.5), "momentum", ("0.5", "0.9")),
    (dict(bias_init="caffe"), "bias_init", ("caffe", "paper")),
    (dict(warmup_steps=5), "warmup_steps", ("5", "0"))],
    ids=["learning_rate", "batch_size", "momentum", "bias_init", "warmup_steps"])
def test_resume_refuses_a_setting_that_must_not_change(trained_copy, dataset_dir, overrides,
                                                       flag, values):
  path = os.path.join(trained_copy, "config.json")
  with open(path) as f:
    before = f.read()
  with pytest.raises(TrainingError) as raised:
    train.train_and_evaluate(_config(epochs=2, **overrides), dataset_lib.load(dataset_dir),
                             trained_copy)
  message = str(raised.value)
  assert f"--{flag}={values[0]} differs from the {values[1]}" in message and "\n" not in message
  with open(path) as f:
    assert f.read() == before
  assert _checkpoint_steps(os.path.join(trained_copy, "ckpt")) == [STEPS_PER_EPOCH]


def test_an_unwritable_model_dir_is_one_error_line(dataset_dir, tmp_path):
  (tmp_path / "file").write_text("not a directory")
  with pytest.raises(TrainingError, match=r"file/model: cannot write the model directory \("):
    train.train_and_evaluate(_config(max_steps=1), dataset_lib.load(dataset_dir),
                             str(tmp_path / "file" / "model"))
  assert (tmp_path / "file").read_text() == "not a directory"


def test_an_invalid_network_is_refused_before_the_model_dir_is_written(dataset_dir, tmp_path):
  model_dir = tmp_path / "model"
  with pytest.raises(TrainingError, match="groups must be at least 1"):
    train.train_and_evaluate(_config(groups=0), dataset_lib.load(dataset_dir), str(model_dir))
  assert not model_dir.exists()
  # The corrected run is not refused for a network it never built.
  train.train_and_evaluate(_config(max_steps=1), dataset_lib.load(dataset_dir), str(model_dir))


def test_skip_corrupt_epochs_are_what_can_be_read(writable_dataset_dir, tmp_path, caplog):
  path = os.path.join(writable_dataset_dir, "train-00001-of-00002.tfrecord")
  with open(path, "r+b") as f:
    f.seek(5000)
    byte = f.read(1)
    f.seek(5000)
    f.write(bytes([byte[0] ^ 0xFF]))
  manifest = dataset_lib.load(writable_dataset_dir)
  readable = sum(len(b["label"]) for b in input_pipeline.make_dataset(
      manifest, "train", batch_size=4, training=False, skip_corrupt=True))
  assert readable < 16  # Fewer full batches than the 4 the manifest's 18 images give.
  caplog.set_level(logging.INFO, logger="absl")
  model_dir = str(tmp_path / "model")
  train.train_and_evaluate(_config(skip_corrupt=True), manifest, model_dir)
  steps = readable // 4
  assert _checkpoint_steps(os.path.join(model_dir, "ckpt")) == [steps]
  assert f"Batch: {steps}/{steps} " in caplog.text
  assert (f"{path}: {9 - (18 - readable)} of its 9 records are readable; --skip_corrupt skips the "
          f"other {18 - readable} in every epoch") in caplog.text


def test_nan_weights_stop_the_run_naming_the_steps_and_save_nothing(writable_dataset_dir,
                                                                    tmp_path):
  mean_path = os.path.join(writable_dataset_dir, manifest_lib.MEAN_NAME)
  mean = np.load(mean_path)
  mean[100, 100, 0] = np.nan
  np.save(mean_path, mean)
  model_dir = str(tmp_path / "model")
  # Max pooling drops the NaN in the forward pass (the loss stays finite); the backward pass puts
  # it in the weights.
  with pytest.raises(NonFiniteError, match=r"non-finite weights after a step in 1\.\.1;"):
    train.train_and_evaluate(_config(checkpoint_every=1), dataset_lib.load(writable_dataset_dir),
                             model_dir)
  assert not os.path.exists(os.path.join(model_dir, "ckpt"))


def test_diverging_loss_stops_the_run_naming_the_steps(dataset_dir, tmp_path):
  model_dir = str(tmp_path / "model")
  with pytest.raises(NonFiniteError, match=r"non-finite loss at a step in 2\.\.3;"):
    train.train_and_evaluate(_config(learning_rate=1e30, log_every=3, checkpoint_every=3),
                             dataset_lib.load(dataset_dir), model_dir)
  assert not os.path.exists(os.path.join(model_dir, "ckpt"))


def test_non_finite_weights_are_never_saved(trained_dir):
  model = model_lib.alexnet(3, width=0.0625)
  model.get_layer("fc8").kernel.assign(tf.fill(model.get_layer("fc8").kernel.shape, np.inf))
  checkpoints = checkpoints_lib.Checkpoints(trained_dir + "_unused", True, model=model)
  with pytest.raises(NonFiniteError, match="step 3"):
    checkpoints.save(3, model)
  assert not os.path.exists(trained_dir + "_unused")


def test_first_loss_far_from_log_classes_warns(caplog):
  caplog.set_level(logging.INFO, logger="absl")
  assert progress_lib.check_first_loss(1.2, 3)
  assert not progress_lib.check_first_loss(331154216.0, 1000)
  assert "First loss 3.31154e+08, expected about ln(1000)=6.91" in caplog.text
  assert "weight init" in caplog.text
  caplog.clear()
  # The trainer's first log line runs the check (and only the first: later losses may be anything).
  progress = progress_lib.Progress(_config(), 4, 8, 0, summaries.SummaryWriters("", False),
                                model_lib.alexnet(3, width=0.0625), num_classes=3)
  for step in (1, 2):
    progress.add(step, tf.constant([4 * 50.0, 0.0, 4.0, 4.0]))
    progress.log(step, 0.01)
  assert caplog.text.count("First loss 50, expected about ln(3)=1.10") == 1
  assert "Loss: 50.0000" in caplog.text


def test_second_trainer_is_refused_and_a_stale_lock_taken_over(tmp_path):
  model_dir = str(tmp_path / "model")
  with model_dir_lib.lock(model_dir, True):
    with pytest.raises(TrainingError, match=f"in use by process {os.getpid()}"):
      with model_dir_lib.lock(model_dir, True):
        pass
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  with open(os.path.join(model_dir, model_dir_lib.LOCK_NAME), "w") as f:
    json.dump({"pid": dead.pid, "hostname": socket.gethostname()}, f)
  with model_dir_lib.lock(model_dir, True):
    with open(os.path.join(model_dir, model_dir_lib.LOCK_NAME)) as f:
      assert json.load(f)["pid"] == os.getpid()


def test_corrupt_checkpoint_is_an_error_not_a_fresh_start(trained_copy, dataset_dir):
  data_file = os.path.join(trained_copy, "ckpt", "ckpt-4.data-00000-of-00001")
  with open(data_file, "r+b") as f:
    f.truncate(os.path.getsize(data_file) // 2)
  with pytest.raises(TrainingError, match="ckpt-4: cannot restore"):
    train.train_and_evaluate(_config(epochs=2), dataset_lib.load(dataset_dir), trained_copy)
  # Checkpoint files without the index that names the latest one: still not a fresh start.
  os.remove(os.path.join(trained_copy, "ckpt", "checkpoint"))
  with pytest.raises(TrainingError, match="no complete checkpoint"):
    train.train_and_evaluate(_config(epochs=2), dataset_lib.load(dataset_dir), trained_copy)


def test_other_label_map_is_refused(trained_copy, dataset_dir):
  path = os.path.join(trained_copy, "config.json")
  with open(path) as f:
    config = json.load(f)
  config["classes"][0]["synset"] = "n99999999"
  with open(path, "w") as f:
    json.dump(config, f)
  with pytest.raises(TrainingError, match="different label map"):
    train.train_and_evaluate(_config(epochs=2), dataset_lib.load(dataset_dir), trained_copy)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_and_exits_cleanly(dataset_dir, tmp_path, signum):
  model_dir = str(tmp_path / "model")
  log_path = str(tmp_path / "log")
  command = [sys.executable, "-m", "train.main", f"--shards={dataset_dir}",
             f"--model_dir={model_dir}", "--width=0.0625", "--batch_size=2", "--epochs=1000",
             "--log_every=1", "--shuffle_buffer=4"]
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, cwd=REPO, stderr=log, stdout=log)
    deadline = time.monotonic() + 120
    while "Batch: 3/" not in open(log_path).read() and time.monotonic() < deadline:
      assert process.poll() is None, open(log_path).read()
      time.sleep(0.5)
    process.send_signal(signum)
    assert process.wait(timeout=120) == 0, open(log_path).read()
  text = open(log_path).read()
  name = signal.Signals(signum).name
  assert "Traceback" not in text
  assert len([line for line in text.splitlines() if f"{name}: saving" in line]) == 1
  saved = _checkpoint_steps(os.path.join(model_dir, "ckpt"))
  assert saved and saved[-1] >= 3
  assert f"Stopped ({name}; rerun the same command to resume) at step {saved[-1]} " in text
  assert not os.path.exists(os.path.join(model_dir, model_dir_lib.LOCK_NAME))


def test_a_second_signal_stops_at_once():
  stop = progress_lib.StopFlag()
  with stop.installed():
    assert signal.getsignal(signal.SIGINT) == stop.handle
    stop.handle(signal.SIGINT, None)
    assert stop.requested == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      stop.handle(signal.SIGINT, None)
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_checkpoint_saves_log_no_library_chatter(trained_dir, tmp_path, caplog):
  from common import quiet  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  caplog.set_level(logging.INFO)
  model = model_lib.alexnet(3, width=0.0625)
  checkpoints_lib.Checkpoints(str(tmp_path / "model"), True, model=model).save(1, model)
  assert os.path.exists(tmp_path / "model" / "ckpt" / "ckpt-1.index")
  assert "Sharding callback" not in caplog.text


def test_cli_user_error_is_one_line_and_exit_1(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "train.main", f"--shards={tmp_path}/none",
       f"--model_dir={tmp_path}/model"], cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode == 1
  assert "manifest.json: not found" in result.stderr and "Traceback" not in result.stderr


# Runs in a fresh process: logical devices must be configured before TensorFlow initialises.
_TWO_CPU_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from common import dataset as dataset_lib
from train import config as config_lib, input_pipeline, model as model_lib, preparation
from train.distributed import cluster
from train.run import schedule, train
from tests.train.conftest import TINY_CONFIG

preparation.LIGHTING_STDDEV = 0.0  # The replicas draw other random numbers than one device.
dataset_dir, model_dir = sys.argv[1:]
manifest = dataset_lib.load(dataset_dir)
config = config_lib.Config(**{**TINY_CONFIG, "dropout": 0.0})
prep = preparation.Preparation.from_stats(manifest.mean_image(), manifest.stats)
batch = next(iter(input_pipeline.make_dataset(manifest, "train", batch_size=4, training=False)))
initial = model_lib.alexnet(3, width=config.width).get_weights()
results = {}
for name, strategy in (("single", tf.distribute.get_strategy()),
                       ("mirrored", cluster.create_strategy())):
  with strategy.scope():
    model = model_lib.alexnet(3, width=config.width, dropout=0.0)
    model.set_weights(initial)
    state = schedule.create_state(config)
    optimizer = train.create_optimizer(config, state["learning_rate"])
    optimizer.build(model.trainable_variables)

  @tf.function
  def step(b):
    stats = strategy.run(
        lambda x: train.train_step(model, optimizer, x, prep, config, state["rng"]), args=(b,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)

  distributed = next(iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch))))
  # The same batch three times: the second and third losses depend on the first updates.
  losses = [float(step(distributed)[0]) for _ in range(3)]
  results[name] = {"replicas": strategy.num_replicas_in_sync, "losses": losses,
                   "fc8": model.get_layer("fc8").kernel.numpy().tolist()}
validation = train.train_and_evaluate(config_lib.Config(**TINY_CONFIG), manifest, model_dir)
results["validation_count"] = validation["count"]
print(json.dumps(results))
"""


def test_two_logical_cpus_train_like_one_device(dataset_dir, tmp_path):
  result = subprocess.run([sys.executable, "-c", _TWO_CPU_SCRIPT, dataset_dir, str(tmp_path / "m")],
                          cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads(result.stdout.strip().splitlines()[-1])
  assert (results["single"]["replicas"], results["mirrored"]["replicas"]) == (1, 2)
  np.testing.assert_allclose(results["mirrored"]["losses"], results["single"]["losses"], rtol=1e-4)
  assert results["single"]["losses"][0] != results["single"]["losses"][2]
  np.testing.assert_allclose(results["mirrored"]["fc8"], results["single"]["fc8"], atol=1e-6)
  assert results["validation_count"] == 9
  assert _checkpoint_steps(str(tmp_path / "m" / "ckpt")) == [STEPS_PER_EPOCH]


@pytest.mark.parametrize("overrides", [dict(precision="bf16"), dict(precision="fp16"),
                                       dict(jit=True)], ids=["bf16", "fp16", "xla"])
def test_gpu_options_train_and_save_on_the_cpu(dataset_dir, tmp_path, overrides):
  """Mixed precision (fp16 with loss scaling) and XLA are GPU options; on a CPU they must still run."""
  model_dir = str(tmp_path / "model")
  try:
    validation = train.train_and_evaluate(_config(max_steps=2, **overrides),
                                          dataset_lib.load(dataset_dir), model_dir)
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")
  assert validation["count"] == 9 and np.isfinite(validation["loss"])
  assert _checkpoint_steps(os.path.join(model_dir, "ckpt")) == [2]
  assert np.isfinite(_read_scalars(os.path.join(model_dir, "train"))["train/loss"]).all()
