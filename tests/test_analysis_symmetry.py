"""Hidden-unit permutations and candidate-gate sign flips preserve a network's function (mlds.analysis.symmetry)."""

import numpy as np
import pytest
import torch

from boinc_app.networks import DEVICE_ARCHITECTURE, Architecture, build_network, module_with_weights
from machines.devices import INPUT_WIDTH
from mlds.analysis import symmetry

TOLERANCE = 1e-5  # float32 outputs of O(1); the transformed network sums the same terms in another order


def random_tensors(arch, seed):
    return {key: value.numpy().copy() for key, value in build_network(arch, init_seed=seed).state_dict().items()}


def outputs(arch, tensors, inputs):
    with torch.no_grad():
        return module_with_weights(arch, tensors).eval()(inputs).numpy()


@pytest.fixture
def inputs():
    generator = torch.Generator().manual_seed(7)  # DS1's shape: (batch, steps, 11 input bits)
    return (torch.rand(6, 40, INPUT_WIDTH, generator=generator) < 0.5).float()


def max_difference(arch, tensors, network_map, inputs):
    return np.abs(outputs(arch, symmetry.apply(tensors, arch, network_map), inputs) - outputs(arch, tensors, inputs)).max()


@pytest.mark.parametrize("permute, flip", [(True, False), (False, True), (True, True)])
def test_permuting_and_sign_flipping_hidden_units_keeps_the_outputs(inputs, permute, flip):
    tensors = random_tensors(DEVICE_ARCHITECTURE, seed=3)
    network_map = symmetry.random_map(DEVICE_ARCHITECTURE, np.random.default_rng(1), permute, flip)
    assert max_difference(DEVICE_ARCHITECTURE, tensors, network_map, inputs) < TOLERANCE


def test_the_map_really_moves_the_weights():
    tensors = random_tensors(DEVICE_ARCHITECTURE, seed=3)
    mapped = symmetry.apply(tensors, DEVICE_ARCHITECTURE, symmetry.random_map(DEVICE_ARCHITECTURE, np.random.default_rng(1)))
    assert all(not np.array_equal(mapped[key], tensors[key]) for key in tensors if key != "head.3.bias")
    np.testing.assert_array_equal(mapped["head.3.bias"], tensors["head.3.bias"])  # the 8 output bits stay


def test_flipping_only_the_candidate_rows_of_weight_ih_is_not_a_symmetry(inputs):
    # the derivation: the n rows of weight_hh and bias_hh and the state's columns must flip too
    tensors = random_tensors(DEVICE_ARCHITECTURE, seed=3)
    broken = {key: value.copy() for key, value in tensors.items()}
    hidden = DEVICE_ARCHITECTURE.hidden_size
    broken["rnn.weight_ih_l0"][2 * hidden] *= -1
    broken["rnn.bias_ih_l0"][2 * hidden] *= -1
    broken["rnn.weight_ih_l1"][:, 0] *= -1
    change = np.abs(outputs(DEVICE_ARCHITECTURE, broken, inputs) - outputs(DEVICE_ARCHITECTURE, tensors, inputs)).max()
    assert change > 1e-3


def test_flipping_an_update_gate_row_is_not_a_symmetry(inputs):
    tensors = random_tensors(DEVICE_ARCHITECTURE, seed=3)
    hidden = DEVICE_ARCHITECTURE.hidden_size
    broken = {key: value.copy() for key, value in tensors.items()}
    for key in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        broken[key][hidden] *= -1  # z row of unit 0, as if z were the odd gate
    broken["rnn.weight_hh_l0"][:, 0] *= -1
    broken["rnn.weight_ih_l1"][:, 0] *= -1
    change = np.abs(outputs(DEVICE_ARCHITECTURE, broken, inputs) - outputs(DEVICE_ARCHITECTURE, tensors, inputs)).max()
    assert change > 1e-3


def test_permuting_rows_without_the_matching_columns_changes_the_outputs(inputs):
    tensors = random_tensors(DEVICE_ARCHITECTURE, seed=3)
    perm = symmetry.UnitMap(tuple(np.random.default_rng(2).permutation(12).tolist()), (1,) * 12)
    broken = {key: value.copy() for key, value in tensors.items()}
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        broken[f"rnn.{name}_l0"] = symmetry.map_gate_rows(tensors[f"rnn.{name}_l0"], 3, perm)
    change = np.abs(outputs(DEVICE_ARCHITECTURE, broken, inputs) - outputs(DEVICE_ARCHITECTURE, tensors, inputs)).max()
    assert change > 1e-3


def test_the_flat_vector_form_agrees_with_the_state_dict_form(inputs):
    from boinc_app.networks import flatten_tensors, parameter_layout

    layout = parameter_layout(DEVICE_ARCHITECTURE)
    tensors = random_tensors(DEVICE_ARCHITECTURE, seed=4)
    network_map = symmetry.random_map(DEVICE_ARCHITECTURE, np.random.default_rng(5))
    flat = symmetry.apply_flat(flatten_tensors(tensors, layout), DEVICE_ARCHITECTURE, network_map)
    np.testing.assert_array_equal(flat, flatten_tensors(symmetry.apply(tensors, DEVICE_ARCHITECTURE, network_map), layout))


def test_lstm_with_relu_head_permutes_and_flips_its_cell_gate(inputs):
    arch = Architecture("lstm", INPUT_WIDTH, 6, 2, (5, 3), "relu")
    tensors = random_tensors(arch, seed=8)
    network_map = symmetry.random_map(arch, np.random.default_rng(9))
    assert all(s == 1 for s in network_map.head[0].signs)  # ReLU units permute but never flip
    assert max_difference(arch, tensors, network_map, inputs) < TOLERANCE


def test_a_sign_flip_of_a_relu_head_unit_is_refused():
    arch = Architecture("lstm", INPUT_WIDTH, 6, 2, (5, 3), "relu")
    network_map = symmetry.NetworkMap(
        tuple(symmetry.UnitMap.identity(6) for _ in range(2)), (symmetry.UnitMap(tuple(range(5)), (-1, 1, 1, 1, 1)),)
    )
    with pytest.raises(ValueError, match="no symmetry"):
        symmetry.apply(random_tensors(arch, seed=8), arch, network_map)
