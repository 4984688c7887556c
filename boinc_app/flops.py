"""Floating-point operations the trainer does, counted from the architecture (for BOINC).

BOINC clients accept an app's own count of the work it did (``<fpops_cumulative>`` in the status
message; projects can grant credit from it, and it is the honest figure for ``rsc_fpops_est``).
The count is analytic, per time step of one sequence through one network:

- a matrix product ``[m] <- [m x k] [k]`` is ``2 m k`` (one multiply and one add per weight);
- each bias addition, element-wise gate operation and activation is 1 per element
  (sigmoid and tanh count as one, as is usual in FLOP counts);
- GRU layer (input width I, hidden H): input projection ``6 I H + 3 H``, recurrent projection
  ``6 H^2 + 3 H``, gates ``10 H`` (r,z: add + sigmoid, 4H; n: r*g, add, tanh, 3H;
  h = n + z (h - n), 3H): ``6 I H + 6 H^2 + 16 H``;
- LSTM layer: input projection ``8 I H + 4 H``, recurrent ``8 H^2 + 4 H``, gates ``9 H``
  (sigmoid of i,f,o 3H; tanh of g H; c = f c + i g 3H; tanh(c) H; h = o tanh(c) H):
  ``8 I H + 8 H^2 + 17 H``;
- linear head layer ``a -> b``: ``2 a b + b``, plus ``b`` for the activation after every layer but
  the last.

A training pass costs forward + backward ~= 3x forward. One *network-epoch* is a training pass
over every training sequence (at the epoch's curriculum length) plus a forward pass over every
validation sequence at full length. The loss and the Adam update are left out: they cost O(weights)
per batch, a few per cent of the sequence work at most. All networks of a workunit are stacked
into one ensemble (``boinc_app.ensemble``), so the count of a workunit is the sum over its
network-epochs.
"""

from boinc_app.training import curriculum_length

TRAINING_FACTOR = 3  # forward + backward ~= 3 x forward


def recurrent_layer_flops(cell, input_size, hidden_size):
    """One time step of one GRU/LSTM layer (see module docstring)."""
    I, H = input_size, hidden_size
    if cell == "gru":
        return 6 * I * H + 6 * H * H + 16 * H
    if cell == "lstm":
        return 8 * I * H + 8 * H * H + 17 * H
    raise ValueError(f"unknown recurrent cell {cell!r}")


def head_flops(hidden_size, head):
    """One time step through the linear head (activation after all but the last layer)."""
    widths = (hidden_size,) + tuple(head)
    total = 0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        total += 2 * a * b + b + (b if i < len(head) - 1 else 0)
    return total


def forward_step_flops(arch):
    """One time step of one sequence through the whole network (forward only)."""
    layers = sum(
        recurrent_layer_flops(arch.cell, arch.input_size if layer == 0 else arch.hidden_size, arch.hidden_size)
        for layer in range(arch.num_layers)
    )
    return layers + head_flops(arch.hidden_size, arch.head)


def network_epoch_flops(spec, epoch):
    """One network's epoch number ``epoch`` (0-based): training pass plus validation pass."""
    step = forward_step_flops(spec.architecture)
    data = spec.data
    train_length = curriculum_length(spec.recipe, epoch, data.length)
    return step * (TRAINING_FACTOR * data.train_size * train_length + data.validation_size * data.length)


def trained_flops(spec, networks):
    """All epochs ``networks`` trained in this workunit (from ``start_epoch`` to ``epochs``)."""
    return float(sum(network_epoch_flops(spec, e) for n in networks for e in range(n.start_epoch, n.epochs)))


def workunit_flops(spec, start_epoch=0):
    """A workunit's count if every network trains its whole epoch budget from ``start_epoch``
    (what ``rsc_fpops_est`` should say; networks that converge early do less)."""
    epochs = range(start_epoch, start_epoch + spec.epoch_budget)
    return float(len(spec.networks) * sum(network_epoch_flops(spec, e) for e in epochs))
