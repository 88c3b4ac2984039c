"""Whether the network is dead: a layer whose every unit outputs zero for every image of a batch.

A ReLU unit whose input is negative for every image outputs zero and passes no gradient back. When
every unit of one layer is like that, the layers below it receive no gradient and the layers above
see the same zeros whatever the image: the output no longer depends on the input, and no learning
rate or number of steps brings it back (the dead layer's own weights get no gradient either, and
weight decay only shrinks them towards their negative biases). A network at chance can be alive, its
output still depending on the image however little, and can still learn; a dead one cannot.

The measure: for each ReLU layer, the fraction of its units that output zero for every image (and
every position) of the batch, taken on the last step of every compiled loop (`train.run.loop`), so at
most one step in `--steps_per_loop` pays for it: a max over activations the backward pass keeps
anyway (benchmarks/bench_liveness.py measures its cost).

The thresholds, measured on checkpoints of real training runs on real photographs (Imagenette, 10
classes, batch 128, fp32, the paper's settings, which do not survive there):
  * fc7 was 71%, 95%, 97% and 98.4% silent at steps 10-40, then 99.0-99.8% at every check from
    step 60 to 220 (three epochs), while the training loss sat at ln(10) and the gradient norm
    reaching conv1 fell from 0.04-0.1 to 0.0004-0.002. Inference gave most batches the same
    probabilities to the last bit. A layer that silent at chance is counted as dead
    (`NEARLY_ALL`): the dozen units left fire for a few images and carry too little to move.
  * issue 19's run of the same settings in bf16 ended with a layer wholly silent: dead at any loss.
  * the same 60 steps with bvlc_alexnet's initialisation, bias rate and no lighting (at the
    paper's batch of 128), a network alive at chance until it left it at about step 40 (25%
    validation top-1 at step 60), had at most 5.5% of any layer silent (fc6), 0% of fc7.
  The other candidates need a threshold with no gap to put it in: the spread of the logits across
  the batch moved between 3e-8 and 8e-4 from batch to batch in the dying network, and issue 19's
  live 1,000-class network at chance gave probabilities that differed by only 6e-6; the gradient
  norm reaching conv1 scales with the learning rate and the loss.
"""

import tensorflow as tf

from train import model as model_lib

# The layer each ReLU follows, as the user knows the layers.
LAYER_OF = {
    relu: ("conv" if int(relu[-1]) <= 5 else "fc") + relu[-1] for relu in model_lib.RELU_LAYERS
}
# A layer this silent while the training loss sits at ln(classes) counts as dead (why: see above).
NEARLY_ALL = 0.99
# Loop ends in a row at which a layer must be silent: momentum carries the updates of the steps
# before the death for a few more steps, and on a tiny batch it was seen to revive a layer once.
CONFIRMATIONS = 2
# What learns first: the recipe measured to learn where the paper's settings die (README.md).
ADVICE = ("start a new --model_dir with --flagfile=train/imagenette.flags (Caffe's initialisation, "
          "measured to learn on Imagenette where the paper's settings die), or a lower "
          "--learning_rate, --warmup_steps=N or --bias_init=caffe; README.md, \"Which flags to "
          "use\"")


def alive_units(activations):
  """For every unit of every ReLU layer, whether it fired for any image of the batch.

  Args:
    activations: the dict of `train.model.with_activations`: ReLU name to `[batch, ..., units]`.

  Returns:
    float32 `[total units]`, 1.0 for a unit that output a positive value somewhere in the batch,
    in the order of `RELU_LAYERS`; summing it over replicas keeps "alive anywhere" as a positive.
  """
  return tf.concat([
      tf.cast(
          tf.reduce_max(tf.reshape(activations[name], [-1, activations[name].shape[-1]]), axis=0)
          > 0, tf.float32) for name in model_lib.RELU_LAYERS
  ], axis=0)


def unit_counts(model):
  """`{layer: units}` of each ReLU layer of `model`, in the order `alive_units` concatenates."""
  return {
      LAYER_OF[name]: int(model.get_layer(name).output.shape[-1]) for name in model_lib.RELU_LAYERS
  }


def silent_fractions(alive, counts):
  """`{layer: fraction of its units silent for the whole batch}` from `alive_units` (summed over
  replicas) and `unit_counts`."""
  fractions, start = {}, 0
  for layer, units in counts.items():
    fractions[layer] = float((alive[start:start + units] <= 0).mean())
    start += units
  return fractions


def dead_layer(fractions, at_chance=False):
  """The first layer whose every unit is silent, or, while the loss is at chance, the first at
  least `NEARLY_ALL` silent; None if there is none (the network is alive)."""
  least = NEARLY_ALL if at_chance else 1.0
  return next((layer for layer, silent in fractions.items() if silent >= least), None)


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


def describe_death(step, layer, fraction, silent_since, last_alive_step, history):
  """The error line for a dead network.

  Args:
    step: the step whose batch confirmed `layer` silent.
    layer: the dead layer (`dead_layer`).
    fraction: the fraction of its units that were silent.
    silent_since: the first step of the checks that found it silent.
    last_alive_step: the last step of this run measured alive, or None (dead from its first step).
    history: the log lines' losses, as for `describe_losses`.
  """
  when = (f"silent since step {silent_since}, alive at step {last_alive_step}"
          if last_alive_step is not None else "it was dead at the first step this run measured")
  units = (f"every unit of {layer} outputs"
           if fraction >= 1.0 else f"{fraction:.1%} of {layer}'s units output")
  return (f"Step {step}: the network is dead and cannot recover: {units} zero for every image of "
          f"the batch, so the output no longer depends on the image and no gradient reaches the "
          f"layers below ({when}; {describe_losses(history)}). The "
          f"checkpoint of step {step} is saved for inspection; {ADVICE}")
