"""Whether the network is dead: a layer whose every unit outputs zero for every image of a batch.

A ReLU unit whose input is negative for every image outputs zero and passes no gradient back. When
every unit of one layer is like that, the layers below it receive no gradient and the layers above
see the same zeros whatever the image: the output no longer depends on the input, and no learning
rate or number of steps brings it back (the dead layer's own weights get no gradient either, and
weight decay only shrinks them towards their negative biases). A network at chance can be alive, its
output still depending on the image however little, and can still learn; a dead one cannot.

The measure: for each ReLU layer, the fraction of its units that output zero for every image (and
every position) of the batch, taken on the last step of every compiled loop (loops end at each log
line; `train.loop`), so at most one step in `--steps_per_loop` pays for it. It is a max over the
activations the backward pass keeps anyway: 0.2% of a step at batch 128 on 2 CPU cores
(benchmarks/bench_liveness.py).

Why that measure and its threshold of exactly 1.0, from measurements on real photographs
(Imagenette, 10 classes, batch 128; README.md, "Which flags to use"):
  * the paper's settings die there: fc7 went 72%, 95%, 97% silent over steps 10-30, all 4096 units
    by step 40 (every later check 100%), after the loss rose to 17.5 at step 5;
  * a network alive at chance (Caffe's settings, still at ln 10 over its first epoch) had at most
    X% of any layer silent, and nowhere near 100%.
  The other candidates need a threshold with no gap to put it in: the spread of the logits across a
  batch was 0.005-0.008 in the dying network before and after fc7 died (dropout below a dead fc7's
  neighbours keeps it above 0 in training mode), and 1e-6 in a live 1,000-class network at chance
  (issue 19's run), so any threshold calls one of them wrong; the gradient norm reaching conv1 stayed
  at 0.03 while fc7 died. A whole silent layer is exact: nothing but death produces it on a batch of
  real images.
"""

import tensorflow as tf

from train import model as model_lib

# The layer each ReLU follows, as the user knows the layers.
LAYER_OF = {relu: ("conv" if int(relu[-1]) <= 5 else "fc") + relu[-1]
            for relu in model_lib.RELU_LAYERS}
ADVICE = ("start a new --model_dir with a lower --learning_rate, --warmup_steps=N or "
          "--bias_init=caffe, or one of the recipes in README.md, \"Which flags to use\"")


def alive_units(activations):
  """For every unit of every ReLU layer, whether it fired for any image of the batch.

  Args:
    activations: the dict of `train.model.with_activations`: ReLU name to `[batch, ..., units]`.

  Returns:
    float32 `[total units]`, 1.0 for a unit that output a positive value somewhere in the batch,
    in the order of `RELU_LAYERS`; summing it over replicas keeps "alive anywhere" as a positive.
  """
  return tf.concat([
      tf.cast(tf.reduce_max(tf.reshape(activations[name], [-1, activations[name].shape[-1]]),
                            axis=0) > 0, tf.float32)
      for name in model_lib.RELU_LAYERS], axis=0)


def unit_counts(model):
  """`{layer: units}` of each ReLU layer of `model`, in the order `alive_units` concatenates."""
  return {LAYER_OF[name]: int(model.get_layer(name).output.shape[-1])
          for name in model_lib.RELU_LAYERS}


def silent_fractions(alive, counts):
  """`{layer: fraction of its units silent for the whole batch}` from `alive_units` (summed over
  replicas) and `unit_counts`."""
  fractions, start = {}, 0
  for layer, units in counts.items():
    fractions[layer] = float((alive[start:start + units] <= 0).mean())
    start += units
  return fractions


def dead_layer(fractions):
  """The first layer whose every unit is silent, or None: the network is dead if there is one."""
  return next((layer for layer, silent in fractions.items() if silent >= 1.0), None)


def describe_losses(history):
  """What the training loss did, from `[(first step, last step, mean loss)]` of the log lines:
  where it started, its peak when that was higher, and where it ended."""
  if not history:
    return "no training loss was logged in this run"

  def at(entry):
    first, last, loss = entry
    return f"{loss:.2f} at step {last}" if first == last else f"{loss:.2f} over steps {first}-{last}"

  peak = max(history, key=lambda entry: entry[2])
  parts = [f"the training loss was {at(history[0])}"]
  if peak is not history[0] and peak is not history[-1]:
    parts.append(f"rose to {at(peak)}")
  if history[-1] is not history[0]:
    parts.append(f"was {at(history[-1])}")
  return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def describe_death(step, layer, last_alive_step, history):
  """The error line for a dead network.

  Args:
    step: the step whose batch found `layer` silent.
    layer: the dead layer (`dead_layer`).
    last_alive_step: the last step of this run measured alive, or None (dead from its first step).
    history: the log lines' losses, as for `describe_losses`.
  """
  when = (f"it was alive at step {last_alive_step}" if last_alive_step is not None
          else "it was dead at the first step this run measured")
  return (f"Step {step}: the network is dead and cannot recover: every unit of {layer} outputs "
          f"zero for every image of the batch, so the output no longer depends on the image and "
          f"no gradient reaches the layers below ({when}; {describe_losses(history)}). The "
          f"checkpoint of step {step} is saved for inspection; {ADVICE}")
