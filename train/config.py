"""The trainer's settings, `Config`: the one home of each setting, its default (the paper's value),
its flag's help and range, and whether a resumed run must keep it.

`train.main` generates its flags from these fields (`common/settings.py`); `train/alexnet.flags`
restates the defaults with the paper's sections, and a test keeps the two equal. WORKSPACE.md's
table of the settings is `settings.markdown_table(Config)`, also kept equal by a test.
"""

import dataclasses

from common.settings import setting

PRECISION_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# The keys of train.model.POSITIVE_BIAS and WEIGHT_STDDEV_OF (a test keeps them equal; the model
# needs TensorFlow, the settings do not).
BIAS_INITS = ("paper", "caffe")
WEIGHT_INITS = ("paper", "caffe")


def _positive_increasing(values):
  try:
    epochs = [int(value) for value in values]
  except ValueError:
    return False
  return all(epoch >= 1 for epoch in epochs) and epochs == sorted(set(epochs))


# The ranges are what makes sense, not what merely runs: a negative rate trains to 1e19.
@dataclasses.dataclass(frozen=True)
class Config:
  """The trainer's settings; `fixed_on_resume` marks those a resumed run must keep: a step's
  meaning (the batch), the schedule's restored state and the network it trains."""
  epochs: int = setting(90, "Passes over the training set.", low=1)
  max_steps: int = setting(0, "Stop after this many steps (0: no limit).", low=0)
  batch_size: int = setting(128, "Global batch size, over all replicas.", low=1,
                            fixed_on_resume=True)
  learning_rate: float = setting(0.01, "Initial learning rate.", low=0, low_open=True,
                                 fixed_on_resume=True)
  momentum: float = setting(0.9, "SGD momentum.", low=0, high=1, high_open=True,
                            fixed_on_resume=True)
  weight_decay: float = setting(
      0.0005, "Weight decay added to the kernels' gradients (the paper's update rule).", low=0,
      fixed_on_resume=True)
  lr_schedule: str = setting(
      "plateau", "plateau: divide by 10 when the validation error stops improving; step: divide "
      "by 10 at --lr_step_epochs.", choices=("plateau", "step"), fixed_on_resume=True)
  patience: int = setting(5, "Evaluations without a lower validation error before the rate drops.",
                          low=1)
  max_lr_drops: int = setting(3, "Most plateau drops of the rate.", low=0)
  lr_step_epochs: tuple = setting(
      (30, 60, 80), "Epochs at which the step schedule divides the rate by 10.", kind=list,
      to_flag=lambda epochs: [str(epoch) for epoch in epochs],
      from_flag=lambda values: tuple(int(value) for value in values),
      validators=((_positive_increasing,
                   "--{name} must be increasing epochs of at least 1"),), fixed_on_resume=True)
  warmup_steps: int = setting(
      0, "Steps over which the rate rises linearly from learning_rate/N to learning_rate (0: "
      "none, as in the paper).", low=0, fixed_on_resume=True)
  dropout: float = setting(0.5, "Dropout rate on the outputs of fc6 and fc7.", low=0, high=1,
                           high_open=True, fixed_on_resume=True)
  groups: int = setting(2, "Towers of conv2, conv4, conv5 (2: the paper).", low=1,
                        fixed_on_resume=True)
  width: float = setting(1.0,
                         "Channel multiplier of every layer but fc8 (1.0: the paper's network).",
                         low=0, low_open=True, fixed_on_resume=True)
  bias_init: str = setting(
      "paper", "Starting bias of conv2, conv4, conv5, fc6, fc7: paper (1) or caffe (bvlc_alexnet's "
      "0.1).", choices=BIAS_INITS, fixed_on_resume=True)
  weight_init: str = setting(
      "paper", "Weights from N(0, 0.01) (paper), or fc6 and fc7 from N(0, 0.005) (caffe: "
      "bvlc_alexnet's).", choices=WEIGHT_INITS, fixed_on_resume=True)
  bias_lr_mult: float = setting(
      1.0, "The biases' learning rate over the weights' (1: the paper; 2: Caffe's).", low=0,
      low_open=True, fixed_on_resume=True)
  lighting: bool = setting(
      True, "Add the paper's PCA colour noise to training images (bvlc_alexnet: no).",
      fixed_on_resume=True)
  precision: str = setting("fp32",
                           "fp32, or bf16/fp16 mixed precision (fp16 with dynamic loss scaling).",
                           choices=tuple(PRECISION_POLICIES), fixed_on_resume=True)
  jit: bool = setting(False, "XLA-compile the forward and backward passes.")
  log_every: int = setting(100, "Steps between log lines and summaries.", low=1)
  checkpoint_every: int = setting(1000,
                                  "Steps between checkpoints (also saved at every epoch end).",
                                  low=1)
  eval_every_epochs: int = setting(1, "Epochs between evaluations.", low=1)
  ten_crop_eval: bool = setting(False,
                                "Evaluate on the paper's ten crops instead of the central crop.")
  skip_corrupt: bool = setting(
      False, "Skip unreadable records with a warning instead of stopping; costs one reading of "
      "the training split at start, to count what an epoch holds.")
  seed: int | None = setting(None, "Seed of initialisation, shuffling and augmentation.", low=0)
  shuffle_buffer: int = setting(10_000, "Records in the shuffle buffer.", low=1)
  # A loop always ends at a log line, checkpoint, evaluation or epoch end, so this never makes them
  # coarser. 10 removes most of the per-call dispatch (see train/run/loop.py).
  steps_per_loop: int = setting(
      10, "Training steps per compiled call; loops end at every log line, checkpoint and epoch "
      "end, so these stay as frequent as asked.", low=1)
  data_service: str | None = setting(
      None, "HOST:PORT of a tf.data service dispatcher (python -m train.data_service) whose "
      "workers run the training input pipeline; evaluation stays local.")
  deterministic: bool = setting(
      False, "Bit-for-bit repeatable training and resumes on this machine (needs --seed; "
      "slower). See train/run/determinism.py for what it promises.")
