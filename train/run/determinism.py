"""`--deterministic`: training that repeats bit for bit, and resumes as if never interrupted.

What it does: seeds Python, NumPy, TensorFlow and Keras from `--seed`
(`keras.utils.set_random_seed`), turns on TensorFlow's op determinism
(`tf.config.experimental.enable_op_determinism`, which also makes every tf.data stage keep its
order), and gives the training input a stream that is a function of the seed alone
(`input_pipeline.Stream(deterministic=True)`): each epoch's shard order, record order and
crops derive from (seed, epoch) and the record's place in it, through stateless random ops, so
the decoding map still runs in parallel; the interleave reads a fixed number of shards at once
rather than one per core. What is left random is checkpointed: the lighting noise's generator
and, in every mode, the dropout layers' seeds. A resumed run starts its stream at the saved
epoch and skips the batches of it already trained on (read and shuffled, not decoded; at most
one epoch's reading), and a fresh run draws its TensorBoard images from a stream of their own,
so the batches a resumed run trains on are those of an uninterrupted one.

What it promises (tests/train/test_determinism.py): with the same seed, flags, data, machine,
TensorFlow and thread count, two runs hold identical weights at every checkpoint, and a run
stopped and resumed holds the weights of an uninterrupted one.

What it does not promise: the same weights on other hardware (another CPU's instruction set or
core count changes oneDNN's and Eigen's summation order), on a GPU (op determinism covers its
kernels, but this is not tested here), with another TensorFlow or Keras, with another
`--batch_size`, `--steps_per_loop` aside (it only groups steps), or with several replicas. Under
`--skip_corrupt` a record that reads but does not decode shifts the batches after it, and a resume
after such a record is no longer exact. Refused: `--data_service` (workers hand files out
dynamically, in arrival order) and `TF_CONFIG` (several trainers, not tested).
"""

import keras
import tensorflow as tf


def refusal(config, task):
  """Why `config` cannot train deterministically (one line), or None."""
  if not config.deterministic:
    return None
  if config.seed is None:
    return "--deterministic needs --seed: the run must start from a known random state"
  if config.data_service:
    return ("--deterministic cannot use --data_service: the service's workers hand out files in "
            "the order they ask for them")
  if task is not None:
    return "--deterministic is for one trainer; TF_CONFIG (several trainers) is not supported"
  return None


def enable(config):
  """Seeds every generator from `config.seed` and turns on TensorFlow's op determinism."""
  keras.utils.set_random_seed(config.seed)  # Python's, NumPy's, Keras' (and TensorFlow's global)
  # Every TensorFlow random op of a deterministic run takes a seed of its own (the stream's
  # stateless crops and per-epoch shuffles, the lighting's generator); without the global seed one
  # that does not fails under op determinism instead of drawing from a hidden one. (TensorFlow's
  # seed helper also fails on a per-epoch tensor seed while the global seed is 0.)
  tf.random.set_seed(None)
  tf.config.experimental.enable_op_determinism()
