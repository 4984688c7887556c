"""What a classifier sees of a network: raw weights, symmetry-invariant features, a canonical form.

Why: raw weights number hidden units arbitrarily, so two networks computing the same function can
lie far apart (``mlds.analysis.symmetry``). Two remedies, both reported beside raw weights:

- ``invariant``: quantities unchanged by every unit permutation and odd-gate sign flip: sorted
  singular values of each gate block (signed permutations are orthogonal), per-unit statistics
  sorted across units (row and column norms, gate biases, absolute values where a bias changes sign
  with its unit, |diagonal| of the recurrent blocks), the output layer's rows as they are (the 8
  output bits are not permutable), and the weight norm. Only the sums ``b_ih + b_hh`` of the
  non-odd gates enter (the split between them is not identifiable).
- ``canonical``: the weights themselves after one fixed signed permutation per layer: each unit's
  sign chosen so that its odd-gate input bias ``bias_ih`` is positive, units sorted by their
  update-gate (GRU ``z``, LSTM ``f``) bias sum, descending; head units likewise by bias. Any two
  networks related by a symmetry get the same canonical weights (exactly: values are only moved
  and negated); networks near a tie of the sort key may land far apart, so it is reported, not
  trusted alone.

Every function takes a weight matrix ``[N, n_params]`` in ``parameter_layout`` order and returns a
float64 matrix ``[N, F]``.
"""

import numpy as np

from boinc_app.networks import parameter_layout, unflatten_tensors
from mlds.analysis import symmetry

UPDATE_GATE = 1  # GRU z, LSTM f: the gate whose bias orders the units of the canonical form


def raw_weights(weights, arch):
    return np.asarray(weights, dtype=np.float64)


def weight_norm(weights, arch):
    """The L2 norm of all of a network's weights: one column (the training-length control)."""
    return np.linalg.norm(np.asarray(weights, dtype=np.float64), axis=1, keepdims=True)


def batch_tensors(weights, arch):
    """``{state_dict key: array [N, *shape]}``: views of the rows of ``weights``."""
    tensors, offset = {}, 0
    for key, shape in parameter_layout(arch):
        size = int(np.prod(shape))
        tensors[key] = np.asarray(weights[:, offset : offset + size], dtype=np.float64).reshape((len(weights),) + shape)
        offset += size
    return tensors


def invariant_features(weights, arch):
    """``[N, F]`` features unchanged by the symmetries of ``mlds.analysis.symmetry``."""
    tensors = batch_tensors(weights, arch)
    parts = []
    for k in range(arch.num_layers):
        parts += _recurrent_layer_features(tensors, arch, k)
    for i in range(len(arch.head)):
        parts += _head_layer_features(tensors, arch, i)
    parts.append(weight_norm(weights, arch))
    return np.concatenate(parts, axis=1)


def _recurrent_layer_features(tensors, arch, k):
    gates, hidden = symmetry.GATES[arch.cell], arch.hidden_size
    w_ih = tensors[f"rnn.weight_ih_l{k}"].reshape(-1, gates, hidden, tensors[f"rnn.weight_ih_l{k}"].shape[-1])
    w_hh = tensors[f"rnn.weight_hh_l{k}"].reshape(-1, gates, hidden, hidden)
    b_ih = tensors[f"rnn.bias_ih_l{k}"].reshape(-1, gates, hidden)
    b_hh = tensors[f"rnn.bias_hh_l{k}"].reshape(-1, gates, hidden)
    parts = [_singular_values(w[:, g]) for w in (w_ih, w_hh) for g in range(gates)]
    units = [np.linalg.norm(w[:, g], axis=-1) for w in (w_ih, w_hh) for g in range(gates)]
    units += _bias_statistics(arch.cell, b_ih, b_hh)
    units += [_diagonal(w_hh[:, g], odd=g == symmetry.ODD_GATE) for g in range(gates)]
    units.append(np.linalg.norm(tensors[f"rnn.weight_hh_l{k}"], axis=1))  # the unit's recurrent fan-out
    units.append(np.linalg.norm(tensors[symmetry.consumer_key(arch, k)], axis=1))  # its fan-out to the next layer
    return parts + [np.sort(u, axis=1) for u in units]


def _bias_statistics(cell, b_ih, b_hh):
    odd = symmetry.ODD_GATE
    sums = [b_ih[:, g] + b_hh[:, g] for g in range(b_ih.shape[1]) if g != odd]
    if cell == "gru":  # n = tanh(W_in x + b_in + r * (W_hn h + b_hn)): both biases flip with the unit
        return sums + [np.abs(b_ih[:, odd]), np.abs(b_hh[:, odd]), b_ih[:, odd] * b_hh[:, odd]]
    return sums + [np.abs(b_ih[:, odd] + b_hh[:, odd])]


def _diagonal(block, odd):
    """Diagonal of a recurrent gate block: an odd-gate entry (j, j) flips twice, the others once."""
    diagonal = np.diagonal(block, axis1=-2, axis2=-1)
    return diagonal if odd else np.abs(diagonal)


def _head_layer_features(tensors, arch, i):
    weight, bias = tensors[f"head.{i}.weight"], tensors[f"head.{i}.bias"]
    rows = np.linalg.norm(weight, axis=-1)
    if i == len(arch.head) - 1:  # output logits: a fixed order
        return [_singular_values(weight), rows, bias]
    unit_bias = np.abs(bias) if arch.activation in symmetry.ODD_ACTIVATIONS else bias
    return [_singular_values(weight), np.sort(rows, axis=1), np.sort(unit_bias, axis=1)]


def _singular_values(blocks):
    return np.linalg.svd(blocks, compute_uv=False)  # descending, [N, min(rows, columns)]


def canonical_map(tensors, arch):
    """The ``symmetry.NetworkMap`` that takes one network (``{key: array}``) to its canonical form."""
    gates, hidden = symmetry.GATES[arch.cell], arch.hidden_size
    recurrent = []
    for k in range(arch.num_layers):
        b_ih = np.asarray(tensors[f"rnn.bias_ih_l{k}"]).reshape(gates, hidden)
        b_hh = np.asarray(tensors[f"rnn.bias_hh_l{k}"]).reshape(gates, hidden)
        key = b_ih[UPDATE_GATE] + b_hh[UPDATE_GATE]
        recurrent.append(_unit_map(order=np.argsort(-key, kind="stable"), sign_of=b_ih[symmetry.ODD_GATE]))
    head = []
    odd = arch.activation in symmetry.ODD_ACTIVATIONS
    for i in range(len(arch.head) - 1):
        bias = np.asarray(tensors[f"head.{i}.bias"])
        order = np.argsort(-(np.abs(bias) if odd else bias), kind="stable")
        head.append(_unit_map(order, sign_of=bias if odd else np.ones_like(bias)))
    return symmetry.NetworkMap(tuple(recurrent), tuple(head))


def _unit_map(order, sign_of):
    signs = np.where(sign_of[order] < 0, -1, 1)
    return symmetry.UnitMap(tuple(int(p) for p in order), tuple(int(s) for s in signs))


def canonical_weights(weights, arch):
    """``[N, n_params]``: each row in its canonical form (``parameter_layout`` order)."""
    layout = parameter_layout(arch)
    rows = []
    for flat in np.asarray(weights, dtype=np.float32):
        network_map = canonical_map(unflatten_tensors(flat, layout), arch)
        rows.append(symmetry.apply_flat(flat, arch, network_map))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


FEATURE_SETS = {
    "raw": raw_weights,
    "invariant": invariant_features,
    "canonical": canonical_weights,
    "norm": weight_norm,
}


def feature_matrix(name, weights, arch):
    """Feature set ``name`` (one of ``FEATURE_SETS``) of every row of ``weights``."""
    try:
        function = FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; known: {', '.join(FEATURE_SETS)}") from None
    return function(weights, arch)
