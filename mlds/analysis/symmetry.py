"""Function-preserving transformations of a network's weights: signed permutations of hidden units.

Why: a classifier on raw weights sees two networks that compute the same function as different
points whenever their hidden units are numbered differently. Features and canonical forms
(``mlds.analysis.features``) must be invariant to exactly these transformations, and the tests check
that each one really preserves the function (outputs equal within float tolerance).

**Permutation.** In recurrent layer ``k`` (PyTorch's gate row blocks, GRU ``r, z, n``; LSTM
``i, f, g, o``) the hidden units can be renumbered: the same permutation on the rows of every gate
block of ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}`` and ``bias_hh_l{k}``, on the
columns of ``weight_hh_l{k}``, and on the input columns of the next layer (``weight_ih_l{k+1}``, or
the head's first ``Linear`` after the last layer). The hidden units of the head's inner ``Linear``
layers permute likewise (rows of ``head.i``, columns of ``head.{i+1}``).

**Sign flip (derived for the GRU).** With ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z`` alike,
``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`` and ``h' = (1 − z) ⊙ n + z ⊙ h``, replace unit
``j``'s state by ``h̃_j = −h_j``. Then ``r_j`` and ``z_j`` must stay as they are (σ is not odd):
their rows are unchanged, but every column ``j`` of ``weight_hh`` (all three blocks) flips so that
``W h`` is unchanged. ``n_j`` must flip: tanh is odd, so the whole pre-activation of row ``j``
flips: the ``n`` row ``j`` of ``weight_ih``, ``bias_ih`` **and** ``weight_hh``, ``bias_hh`` (the
``r ⊙ (…)`` term flips because ``r_j`` is unchanged and ``(W_hn h + b_hn)_j`` flips; the entry
``(n, j, j)`` of ``weight_hh`` flips twice and stays). Then ``h̃'_j = (1 − z_j)(−n_j) + z_j(−h_j)
= −h'_j``, and the zero initial state is its own flip, so by induction every step's state is the
flipped one; the next layer's input columns ``j`` flip to undo it. This is an exact symmetry with no
condition beyond the zero initial state (which the spec fixes). For the LSTM the same holds with
the cell gate ``g`` (tanh) in place of ``n``: ``c_j`` and ``h_j = o_j tanh(c_j)`` flip together.
Head units flip only where the head's activation is odd (``tanh``, ``identity``); a ReLU unit has
no sign symmetry, and ``apply`` refuses such a flip.

Not covered here (continuous, not discrete): only the sums ``b_ir + b_hr`` and ``b_iz + b_hz`` of a
GRU (every gate's ``b_ih + b_hh`` of an LSTM) enter the function; invariant features use the sums.
"""

from dataclasses import dataclass

import numpy as np

from boinc_app.networks import flatten_tensors, parameter_layout, unflatten_tensors

GATES = {"gru": 3, "lstm": 4}
ODD_GATE = 2  # GRU n, LSTM g: the tanh gate whose row (and the state) can change sign
ODD_ACTIVATIONS = ("tanh", "identity")


@dataclass(frozen=True)
class UnitMap:
    """A signed permutation of one layer's units: new unit ``i`` is old unit ``perm[i]`` times ``signs[i]``."""

    perm: tuple
    signs: tuple

    @classmethod
    def identity(cls, size):
        return cls(tuple(range(size)), (1,) * size)


@dataclass(frozen=True)
class NetworkMap:
    """One ``UnitMap`` per recurrent layer and per inner head layer (all but the last ``Linear``)."""

    recurrent: tuple
    head: tuple


def random_map(arch, rng, permute=True, flip=True):
    """A random ``NetworkMap`` of ``arch`` (signs on head units only where the activation is odd)."""
    head_flip = flip and arch.activation in ODD_ACTIVATIONS
    recurrent = tuple(_random_unit_map(arch.hidden_size, rng, permute, flip) for _ in range(arch.num_layers))
    head = tuple(_random_unit_map(width, rng, permute, head_flip) for width in arch.head[:-1])
    return NetworkMap(recurrent, head)


def _random_unit_map(size, rng, permute, flip):
    perm = rng.permutation(size) if permute else np.arange(size)
    signs = rng.choice((-1, 1), size) if flip else np.ones(size, dtype=int)
    return UnitMap(tuple(int(p) for p in perm), tuple(int(s) for s in signs))


def apply(tensors, arch, network_map):
    """``{state_dict key: array}`` -> the same function's weights under ``network_map`` (new arrays)."""
    _check_flips(arch, network_map)
    out = {key: np.array(value, copy=True) for key, value in tensors.items()}
    gates = GATES[arch.cell]
    for k, unit_map in enumerate(network_map.recurrent):
        _map_recurrent_layer(out, k, gates, unit_map)
        _map_input_columns(out, consumer_key(arch, k), unit_map)
    for i, unit_map in enumerate(network_map.head):
        _map_rows(out, f"head.{i}.weight", unit_map)
        _map_rows(out, f"head.{i}.bias", unit_map)
        _map_input_columns(out, f"head.{i + 1}.weight", unit_map)
    return out


def apply_flat(flat, arch, network_map):
    """One flat weight vector (``parameter_layout`` order) -> its image under ``network_map``."""
    layout = parameter_layout(arch)
    return flatten_tensors(apply(unflatten_tensors(flat, layout), arch, network_map), layout)


def _check_flips(arch, network_map):
    if arch.activation in ODD_ACTIVATIONS:
        return
    if any(s != 1 for unit_map in network_map.head for s in unit_map.signs):
        raise ValueError(f"a sign flip of a head unit is no symmetry with activation {arch.activation!r}")


def consumer_key(arch, k):
    """The weight whose input columns are layer ``k``'s hidden units."""
    return f"rnn.weight_ih_l{k + 1}" if k + 1 < arch.num_layers else "head.0.weight"


def _map_recurrent_layer(out, k, gates, unit_map):
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        key = f"rnn.{name}_l{k}"
        out[key] = map_gate_rows(out[key], gates, unit_map)
    _map_input_columns(out, f"rnn.weight_hh_l{k}", unit_map)


def map_gate_rows(array, gates, unit_map):
    """Rows of every gate block permuted; the odd gate's rows also take the signs."""
    perm, signs = np.asarray(unit_map.perm), np.asarray(unit_map.signs, dtype=array.dtype)
    blocks = array.reshape(gates, len(perm), -1)[:, perm].copy()
    blocks[ODD_GATE] *= signs[:, None]
    return blocks.reshape(array.shape)


def _map_rows(out, key, unit_map):
    perm, signs = np.asarray(unit_map.perm), np.asarray(unit_map.signs, dtype=out[key].dtype)
    rows = out[key][perm]
    out[key] = rows * signs.reshape((-1,) + (1,) * (rows.ndim - 1))


def _map_input_columns(out, key, unit_map):
    perm, signs = np.asarray(unit_map.perm), np.asarray(unit_map.signs, dtype=out[key].dtype)
    out[key] = out[key][:, perm] * signs[None, :]
