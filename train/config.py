"""The trainer's settings, `Config`: the one home of their defaults, the paper's values."""

import dataclasses

PRECISION_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclasses.dataclass(frozen=True)
class Config:
  """The trainer's settings; the one home of their defaults, the paper's values.

  `train/alexnet.flags` restates them with the paper's sections; a test keeps the two equal.
  """
  epochs: int = 90
  max_steps: int = 0  # 0: no bound besides epochs.
  batch_size: int = 128  # Global, over all replicas.
  learning_rate: float = 0.01
  momentum: float = 0.9
  weight_decay: float = 0.0005
  lr_schedule: str = "plateau"  # "plateau" or "step".
  patience: int = 5  # Evaluations without a lower validation error before the rate drops.
  max_lr_drops: int = 3
  lr_step_epochs: tuple = (30, 60, 80)
  # Steps over which the rate rises linearly to learning_rate (0: none, the paper's start).
  warmup_steps: int = 0
  dropout: float = 0.5
  groups: int = 2
  width: float = 1.0
  bias_init: str = "paper"  # A key of train.model.POSITIVE_BIAS: "paper" (1) or "caffe" (0.1).
  # A key of train.model.WEIGHT_STDDEV_OF: "paper" (N(0, 0.01)) or "caffe" (fc6, fc7 N(0, 0.005)).
  weight_init: str = "paper"
  bias_lr_mult: float = 1.0  # The biases' rate over the weights' (Caffe's lr_mult: 2).
  lighting: bool = True  # Section 4.1's PCA colour noise (bvlc_alexnet trains without it).
  precision: str = "fp32"
  jit: bool = False
  log_every: int = 100
  checkpoint_every: int = 1000
  eval_every_epochs: int = 1
  ten_crop_eval: bool = False
  skip_corrupt: bool = False
  seed: int | None = None
  shuffle_buffer: int = 10_000
  # Steps per compiled call; a loop always ends at a log line, checkpoint, evaluation or epoch end,
  # so this never makes them coarser. 10 removes most of the per-call dispatch (see train/run/loop.py).
  steps_per_loop: int = 10
  data_service: str | None = None  # HOST:PORT of a tf.data service dispatcher (train.data_service).
  deterministic: bool = False  # Bit-for-bit repeatable runs and resumes (train/run/determinism.py).
