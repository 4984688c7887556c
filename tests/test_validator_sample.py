"""Which networks the validator re-evaluates: a sample drawn after upload, all of a small result.

A network whose weights were changed after training (its claims no longer follow from them) is
caught exactly when the sample holds it; every other check covers every network.
"""

import random

import numpy as np
import pytest

from tests.conftest import edit_tensor, train_spec
from tests.test_validator_hostile import mutated
from validator.checks import REEVALUATED_NETWORKS, INVALID, VALID, NetworkSample, validate_files
from workgen.specs import make_spec, with_data

TAMPERED = 5


@pytest.fixture(scope="module")
def eight_networks(tmp_path_factory):
    spec = with_data(make_spec("DS1", "SingleInvertMachine", networks=8, max_epochs=3, epoch_budget=1), train_size=200)
    return train_spec(tmp_path_factory.mktemp("eight"), spec)


def tampered(result, tmp_path):
    def mutate(f):
        edit_tensor(f, f"networks/net-00000{TAMPERED}", "head.3.weight", lambda v: v.__iadd__(np.float32(0.5)))

    return mutated(result, tmp_path, mutate)


def sample_with(network_in_sample):
    """A seeded sample of 4 of 8 that holds (or leaves out) the tampered network."""
    for seed in range(100):
        sample = NetworkSample(REEVALUATED_NETWORKS, random.Random(seed))
        if (TAMPERED in sample.choose(8)) == network_in_sample:
            return NetworkSample(REEVALUATED_NETWORKS, random.Random(seed))
    raise AssertionError("no such seed")


def test_a_tampered_network_is_caught_when_the_sample_holds_it(eight_networks, tmp_path):
    spec_path, result = eight_networks
    path = tampered(result, tmp_path)
    outcome = validate_files(spec_path, path, chooser=sample_with(True))
    assert outcome.verdict == INVALID and f"net-00000{TAMPERED}" in outcome.reason
    assert validate_files(spec_path, path, chooser=NetworkSample(None)).verdict == INVALID  # all re-evaluated


def test_a_tampered_network_outside_the_sample_is_not_re_evaluated(eight_networks, tmp_path):
    spec_path, result = eight_networks
    outcome = validate_files(spec_path, tampered(result, tmp_path), chooser=sample_with(False))
    assert outcome.verdict == VALID and "4 re-evaluated" in outcome.summary


def test_the_default_sample_is_drawn_anew_for_every_validation_and_covers_small_results():
    draws = {tuple(NetworkSample(REEVALUATED_NETWORKS).choose(32)) for _ in range(20)}
    assert len(draws) > 1 and all(len(d) == REEVALUATED_NETWORKS for d in draws)
    assert NetworkSample(REEVALUATED_NETWORKS).choose(3) == [0, 1, 2]


def test_an_honest_result_is_valid_whatever_the_sample(eight_networks):
    spec_path, result = eight_networks
    for seed in range(3):
        assert validate_files(spec_path, result, chooser=NetworkSample(REEVALUATED_NETWORKS, random.Random(seed))).verdict == VALID
