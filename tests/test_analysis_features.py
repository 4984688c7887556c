"""Invariant features and canonical forms are unchanged by the symmetries, and tell networks apart (mlds.analysis.features)."""

import numpy as np
import pytest

from boinc_app.networks import DEVICE_ARCHITECTURE, Architecture, build_network, flatten_tensors, parameter_layout
from mlds.analysis import features, symmetry

LSTM_RELU = Architecture("lstm", 11, 6, 2, (5, 3), "relu")


def network_rows(arch, seeds):
    layout = parameter_layout(arch)
    return np.stack([flatten_tensors(build_network(arch, init_seed=s).state_dict(), layout) for s in seeds])


def mapped_rows(rows, arch, seed):
    rng = np.random.default_rng(seed)
    return np.stack([symmetry.apply_flat(row, arch, symmetry.random_map(arch, rng)) for row in rows])


@pytest.mark.parametrize("arch", [DEVICE_ARCHITECTURE, LSTM_RELU], ids=["gru-tanh", "lstm-relu"])
def test_invariant_features_do_not_change_under_random_permutations_and_flips(arch):
    rows = network_rows(arch, seeds=range(4))
    mapped = mapped_rows(rows, arch, seed=11)
    assert not np.allclose(rows, mapped)
    np.testing.assert_allclose(
        features.invariant_features(mapped, arch), features.invariant_features(rows, arch), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("arch", [DEVICE_ARCHITECTURE, LSTM_RELU], ids=["gru-tanh", "lstm-relu"])
def test_canonical_weights_are_the_same_for_every_image_of_a_network(arch):
    rows = network_rows(arch, seeds=range(4))
    np.testing.assert_array_equal(features.canonical_weights(mapped_rows(rows, arch, seed=12), arch), features.canonical_weights(rows, arch))


def test_every_feature_set_tells_different_networks_apart():
    rows = network_rows(DEVICE_ARCHITECTURE, seeds=range(6))
    for name in features.FEATURE_SETS:
        matrix = features.feature_matrix(name, rows, DEVICE_ARCHITECTURE)
        assert matrix.shape[0] == 6 and np.isfinite(matrix).all()
        distances = np.linalg.norm(matrix[:, None] - matrix[None], axis=-1)
        assert (distances[~np.eye(6, dtype=bool)] > 1e-6).all(), name


def test_a_non_symmetry_changes_the_invariant_features():
    rows = network_rows(DEVICE_ARCHITECTURE, seeds=range(2))
    broken = rows.copy()
    broken[:, 0] *= -1  # one input weight of r, unit 0: no symmetry flips it alone
    assert not np.allclose(features.invariant_features(broken, DEVICE_ARCHITECTURE), features.invariant_features(rows, DEVICE_ARCHITECTURE))


def test_feature_sizes_of_the_device_network():
    rows = network_rows(DEVICE_ARCHITECTURE, seeds=[1])
    assert features.feature_matrix("raw", rows, DEVICE_ARCHITECTURE).shape == (1, 4364)
    assert features.feature_matrix("canonical", rows, DEVICE_ARCHITECTURE).shape == (1, 4364)
    assert features.feature_matrix("norm", rows, DEVICE_ARCHITECTURE).shape == (1, 1)
    assert 500 < features.feature_matrix("invariant", rows, DEVICE_ARCHITECTURE).shape[1] < 1500
    with pytest.raises(ValueError, match="unknown feature set"):
        features.feature_matrix("pixels", rows, DEVICE_ARCHITECTURE)
