"""The trainer's GPU paths exercised on the CPU: two logical devices, mixed precision, XLA."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from common import dataset as dataset_lib
from train.run import train

from tests.train.conftest import STEPS_PER_EPOCH
from tests.train.conftest import checkpoint_steps
from tests.train.conftest import read_scalars
from tests.train.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
batch = next(iter(input_pipeline.make_dataset(
    manifest, input_pipeline.Stream("train", batch_size=4, training=False))))
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
  result = subprocess.run([sys.executable, "-c", _TWO_CPU_SCRIPT, dataset_dir,
                           str(tmp_path / "m")], cwd=REPO, capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads(result.stdout.strip().splitlines()[-1])
  assert (results["single"]["replicas"], results["mirrored"]["replicas"]) == (1, 2)
  np.testing.assert_allclose(results["mirrored"]["losses"], results["single"]["losses"], rtol=1e-4)
  assert results["single"]["losses"][0] != results["single"]["losses"][2]
  np.testing.assert_allclose(results["mirrored"]["fc8"], results["single"]["fc8"], atol=1e-6)
  assert results["validation_count"] == 9
  assert checkpoint_steps(str(tmp_path / "m" / "ckpt")) == [STEPS_PER_EPOCH]


@pytest.mark.parametrize(
    "overrides",
    [dict(precision="bf16"), dict(precision="fp16"),
     dict(jit=True)], ids=["bf16", "fp16", "xla"])
def test_gpu_options_train_and_save_on_the_cpu(dataset_dir, tmp_path, overrides):
  """Mixed precision (fp16 with loss scaling) and XLA are GPU options; on a CPU they must still run."""
  model_dir = str(tmp_path / "model")
  try:
    validation = train.train_and_evaluate(tiny_config(max_steps=2, **overrides),
                                          dataset_lib.load(dataset_dir), model_dir)
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")
  assert validation["count"] == 9 and np.isfinite(validation["loss"])
  assert checkpoint_steps(os.path.join(model_dir, "ckpt")) == [2]
  assert np.isfinite(read_scalars(os.path.join(model_dir, "train"))["train/loss"]).all()
