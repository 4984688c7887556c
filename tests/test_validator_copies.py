"""Copied networks: one honestly trained network filed under two keys is caught.

Copying ``net-000000``'s weights, moments and history into ``net-000001`` and restoring
``net-000001``'s seeds passes every per-network check (the copy's claims re-evaluate correctly).
Only comparing the networks of a workunit catches it: honest networks from different seeds are
far apart in weight space, a copy is at cosine similarity 1.
"""

import shutil

import h5py
import numpy as np
import pytest

from boinc_app.result_file import read_result
from boinc_app.training import NetworkState
from conftest import train_small
from validator.checks import DUPLICATE_SIMILARITY, InvalidResult, check_distinct, validate_files

NET, OTHER_NET = "networks/net-000000", "networks/net-000001"


def copy_network(noise=0.0):
    """Replace net-000001 by net-000000 (plus relative weight ``noise``), keeping net-000001's seeds."""

    def mutate(f):
        seeds = {name: f[OTHER_NET].attrs[name] for name in ("init_seed", "order_seed")}
        del f[OTHER_NET]
        f.copy(f[NET], f["networks"], name="net-000001")
        f[OTHER_NET].attrs.update(seeds)
        if noise:  # on the weights only: the copy's moments and history stay net-000000's
            values = f[OTHER_NET]["weights"][()]
            rng = np.random.default_rng(0)
            f[OTHER_NET]["weights"][...] = values * (1 + noise * rng.standard_normal(values.shape)).astype(np.float32)

    return mutate


@pytest.mark.parametrize("noise", [0.0, 1e-4], ids=["exact_copy", "copy_with_noise"])
def test_copied_network_is_invalid_naming_both(small_result, tmp_path, noise):
    spec_path, result = small_result
    path = tmp_path / "result.h5"
    shutil.copyfile(result, path)
    with h5py.File(path, "r+") as f:
        copy_network(noise)(f)
    outcome = validate_files(spec_path, path)
    assert outcome.verdict == "invalid", outcome
    assert "networks net-000000 and net-000001 carry the same weights (cosine similarity 1.0000" in outcome.reason


def network(key, weights, init_seed):
    return NetworkState(key=key, init_seed=init_seed, order_seed=init_seed, weights=weights, exp_avg={}, exp_avg_sq={})


def test_scaled_copy_and_zero_networks_are_duplicates():
    rng = np.random.default_rng(1)
    a = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    scaled = {k: 2 * v for k, v in a.items()}
    with pytest.raises(InvalidResult, match="networks net-000000 and net-000002 carry the same weights"):
        check_distinct([network("net-000000", a, 1), network("net-000001", {k: -v for k, v in a.items()}, 2),
                        network("net-000002", scaled, 3)])  # fmt: skip
    zeros = {k: np.zeros_like(v) for k, v in a.items()}
    with pytest.raises(InvalidResult, match="networks net-000000 and net-000001 carry the same weights"):
        check_distinct([network("net-000000", zeros, 1), network("net-000001", zeros, 2)])


def test_networks_given_the_same_init_seed_are_not_compared():
    a = {"w": np.ones((2, 2), np.float32)}
    check_distinct([network("net-000000", a, 7), network("net-000001", a, 7)])


@pytest.fixture(scope="module")
def honest_eight(tmp_path_factory):
    return train_small(tmp_path_factory.mktemp("honest_eight"), networks=8, max_epochs=2)


def max_similarity(result):
    _, state, _ = read_result(result)
    flat = np.stack([np.concatenate([np.ravel(v) for _, v in sorted(n.weights.items())]) for n in state.networks])
    flat = flat.astype(np.float64)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    similarity = unit @ unit.T
    return similarity[np.triu_indices(len(flat), k=1)].max()


def test_honest_networks_are_far_from_the_duplicate_threshold(honest_eight):
    """Measured: the largest similarity of 28 honest pairs (8 networks, 2 epochs) is 0.048; of the
    496 pairs of a 32-network DS1 result of 3 epochs, 0.090 (``DUPLICATE_SIMILARITY``'s comment)."""
    spec_path, result = honest_eight
    assert max_similarity(result) < 0.2 < DUPLICATE_SIMILARITY
    assert validate_files(spec_path, result).verdict == "valid"
