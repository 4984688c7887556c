"""The spot check (validator/spot_check.py): honest results pass, forged ones fail, and the tests
name what it does not catch.

The workunits are small (4 networks, 256 training sequences, 3 epochs) and trained through
``training.train``, the volunteer's code path, in one ensemble; the spot check re-trains networks
alone. ``budget_share=10`` re-trains every network to its end (the strongest check); the default
budget re-trains one epoch of one network here.
"""

import copy
import dataclasses

import numpy as np
import pytest

from boinc_app import training
from boinc_app.task_data import task_data
from tests.conftest import SilentControl
from validator.checks import InvalidResult
from validator.spot_check import ALONE_COST, check_adam, plan_reexecution, spot_check
from workgen.specs import make_spec, with_data, with_recipe

TRAINED = ("weights", "exp_avg", "exp_avg_sq", "history")  # what training produces; seeds and key stay
EVERYTHING = 10.0  # budget share that re-trains every network of these workunits to its end


def small_spec(seed=1, networks=4, epochs=3, **changes):
    spec = make_spec("DS1", "ParityMachine", networks=networks, seed=seed, max_epochs=50, epoch_budget=epochs, **changes)
    return with_data(spec, train_size=256, validation_size=200)


def train(spec, state=None):
    state = state or training.initial_state(spec)
    return training.train(spec, task_data(spec), state, SilentControl())


@pytest.fixture(scope="module")
def spec():
    return small_spec()


@pytest.fixture(scope="module")
def data(spec):
    return task_data(spec)


@pytest.fixture(scope="module")
def honest(spec):
    return train(spec)


def check(spec, state, data, seed=0, budget_share=EVERYTHING, resume_state=None):
    spot_check(spec, state, np.random.default_rng(seed), resume_state=resume_state, data=data, budget_share=budget_share)


def forged(state, index, **changes):
    """A copy of ``state`` whose network ``index`` has ``changes``; seeds and key kept."""
    state = copy.deepcopy(state)
    for name, value in changes.items():
        setattr(state.networks[index], name, value)
    return state


def test_an_honest_result_passes_when_every_network_is_retrained(spec, honest, data):
    check(spec, honest, data)


@pytest.mark.parametrize("seed", range(4))
def test_an_honest_result_passes_at_the_default_budget(spec, honest, data, seed):
    check(spec, honest, data, seed=seed, budget_share=0.02)


@pytest.mark.parametrize("kinds", ["full", "head"])
def test_an_honest_result_with_restarts_passes(kinds):
    """Restarted after epoch 2: lineage from the restart's seed (full) or the start (head), the Adam
    step count restarting or not, and the re-execution applying the claimed restart."""
    spec = with_recipe(small_spec(), restart_after=2, restart_kinds=kinds)
    state = train(spec)
    assert all(n.restart_epochs == [2] for n in state.networks)
    check(spec, state, task_data(spec))


def test_an_honest_result_with_other_kernels_rounding_passes(spec, honest, data):
    """Final weights and moments off by the relative error measured on other CPU kernels after
    a few epochs (~1e-5, docs/spot-check.md), losses by 1e-7: still the same network."""
    state = copy.deepcopy(honest)
    noise = np.random.default_rng(5)
    for network in state.networks:
        for name in ("weights", "exp_avg", "exp_avg_sq"):
            scale = 1e-5 if name == "weights" else 1e-4
            values = getattr(network, name)
            factors = {k: 1 + scale * noise.standard_normal(v.shape) for k, v in values.items()}
            setattr(network, name, {k: (v * factors[k]).astype(np.float32) for k, v in values.items()})
        network.history["validation_loss"] = [x * (1 + 1e-7) for x in network.history["validation_loss"]]
    check(spec, state, data)


def test_a_network_copied_from_another_with_its_seeds_restored_fails(spec, honest, data):
    source = honest.networks[0]
    state = forged(honest, 1, **{name: copy.deepcopy(getattr(source, name)) for name in TRAINED})
    with pytest.raises(InvalidResult, match="net-000000 and net-000001 are copies"):
        check(spec, state, data, budget_share=0.0)


def test_a_network_trained_from_another_seed_fails_on_its_lineage_for_any_draw(spec, honest, data):
    """A network of another workunit (or of the store): its initial weights were another seed's."""
    other = train(small_spec(seed=101, networks=1)).networks[0]
    state = forged(honest, 2, **{name: getattr(other, name) for name in TRAINED})
    with pytest.raises(InvalidResult, match="net-000002: recurrent weights do not descend from the initial weights"):
        check(spec, state, data, budget_share=0.0)


def test_a_network_of_another_task_with_the_same_index_fails_on_its_lineage_for_any_draw(spec, honest, data):
    """Since SPEC_VERSION 7 every task hashes its own seeds: net-000002 of ParityModified began from
    other weights than ours, so lineage alone catches it, drawn for re-execution or not."""
    other_task = make_spec("DS2", "ParityModified", networks=3, seed=1, max_epochs=50, epoch_budget=3)
    other_task = with_data(other_task, train_size=256, validation_size=200)
    other = train(other_task).networks[2]
    assert other.init_seed != honest.networks[2].init_seed
    state = forged(honest, 2, **{name: getattr(other, name) for name in TRAINED})
    undrawn = next(s for s in range(20) if plan_reexecution(state, np.random.default_rng(s), 0.0)[0][0] != 2)
    with pytest.raises(InvalidResult, match="net-000002: recurrent weights do not descend from the initial weights"):
        check(spec, state, data, budget_share=0.0, seed=undrawn)


def test_a_stored_network_passed_as_known_is_caught_as_a_copy(spec, honest, data):
    """``known``: a copy of a stored network is refused by name whatever its lineage says (old
    specs, before SPEC_VERSION 7, shared seeds across tasks)."""
    state = forged(honest, 2, **{name: copy.deepcopy(getattr(honest.networks[2], name)) for name in TRAINED})
    with pytest.raises(InvalidResult, match="DS2/ParityModified/net-000002 and net-000002 are copies"):
        known = [("DS2/ParityModified/net-000002", honest.networks[2].weights)]
        spot_check(spec, state, np.random.default_rng(0), data=data, budget_share=0.0, known=known)


def test_a_network_returned_untrained_with_a_borrowed_history_fails(spec, honest, data):
    start = training.initial_state(spec).networks[0]
    state = forged(honest, 0, weights=start.weights)
    with pytest.raises(InvalidResult, match="net-000000: claims 3 epochs but has not moved from its start"):
        check(spec, state, data, budget_share=0.0)


def trained_with_other_batch_orders(spec, indices):
    """Networks started from their own initial weights but trained on other batch orders (work
    done for another workunit, or a cheaper order): the lineage check cannot see this."""
    state = training.initial_state(spec)
    for i in indices:
        state.networks[i].order_seed += 1000
    state = train(spec, state)
    for i in indices:
        state.networks[i].order_seed -= 1000
    return state


def test_all_networks_trained_on_other_batch_orders_fail_at_the_default_budget(spec, data):
    state = trained_with_other_batch_orders(spec, range(4))
    for seed in range(3):
        with pytest.raises(InvalidResult, match="epoch 1 train_loss"):
            check(spec, state, data, seed=seed, budget_share=0.02)


def test_one_network_trained_on_another_batch_order_is_caught_when_drawn(spec, data):
    state = trained_with_other_batch_orders(spec, [3])
    caught = 0
    for seed in range(8):
        drawn = plan_reexecution(state, np.random.default_rng(seed), 0.02)
        try:
            check(spec, state, data, seed=seed, budget_share=0.02)
        except InvalidResult:
            caught += 1
            assert drawn[0][0] == 3
        else:
            assert 3 not in [i for i, _ in drawn]
    assert 0 < caught < 8  # one epoch of one network of 4: caught with probability 1/4
    with pytest.raises(InvalidResult, match="net-000003"):
        check(spec, state, data)


def claim_an_extra_epoch(spec, state, index):
    """Network ``index`` stopped one epoch early and claims one more: its history repeated."""
    network = state.networks[index]
    network.epochs += 1
    network.adam_step += -(-spec.data.train_size // spec.recipe.batch_size)
    for values in network.history.values():
        values.append(values[-1])
    return state


def test_an_invented_last_epoch_fails_when_the_network_is_retrained_to_its_end(data):
    spec3, spec2 = small_spec(), small_spec(epochs=2)
    state = train(spec2)
    state = claim_an_extra_epoch(spec2, state, 0)
    state.networks = [state.networks[0]] + train(spec3).networks[1:]
    with pytest.raises(InvalidResult, match="net-000000: epoch 3"):
        check(spec3, state, data)


def test_an_invented_last_epoch_is_not_caught_by_a_one_epoch_prefix(data):
    """Not caught: the default budget re-trains epoch 1 only, and the format holds no state from
    later epochs (docs/spot-check.md: snapshots)."""
    spec3, spec2 = small_spec(), small_spec(epochs=2)
    state = train(spec3)
    state.networks[0] = claim_an_extra_epoch(spec2, train(spec2), 0).networks[0]
    for seed in range(4):
        check(spec3, state, data, seed=seed, budget_share=0.02)


def scaled(moments, factor):
    return {k: (v * factor).astype(np.float32) for k, v in moments.items()}


@pytest.mark.parametrize(
    "name, factor, message",
    [("exp_avg", 100.0, "exp_avg"), ("exp_avg_sq", 0.0, "exp_avg too large"), ("exp_avg_sq", -1.0, "negative exp_avg_sq")],
)
def test_grossly_tampered_moments_fail_adam_s_invariants_in_every_network(spec, honest, name, factor, message):
    network = copy.deepcopy(honest.networks[1])
    setattr(network, name, scaled(getattr(network, name), factor))
    with pytest.raises(InvalidResult, match=message):
        check_adam(spec, network)


def test_a_wrong_adam_step_fails(spec, honest):
    network = dataclasses.replace(honest.networks[0], adam_step=honest.networks[0].adam_step + 1)
    with pytest.raises(InvalidResult, match="adam_step"):
        check_adam(spec, network)


def test_moments_tampered_within_the_invariants_fail_when_the_network_is_retrained_to_its_end(spec, honest, data):
    state = forged(honest, 1, exp_avg=scaled(honest.networks[1].exp_avg, 0.5))
    with pytest.raises(InvalidResult, match="net-000001: final exp_avg"):
        check(spec, state, data)


def test_moments_tampered_within_the_invariants_are_not_caught_at_the_default_budget(spec, honest, data):
    """Not caught: no network here is re-trained to its end at 2 % (3 epochs each)."""
    state = forged(honest, 1, exp_avg=scaled(honest.networks[1].exp_avg, 0.5))
    for seed in range(4):
        check(spec, state, data, seed=seed, budget_share=0.02)


def follow_up_spec():
    return small_spec(epochs=2, continuation=1, resume_from="previous.h5")


def test_an_honest_follow_up_passes(honest, data):
    spec = follow_up_spec()
    state = train(spec, training.continue_state(spec, copy.deepcopy(honest)))
    check(spec, state, data, resume_state=honest)


def test_a_follow_up_that_rewrites_its_previous_history_fails(honest, data):
    spec = follow_up_spec()
    state = train(spec, training.continue_state(spec, copy.deepcopy(honest)))
    state.networks[0].history["validation_accuracy"][0] += 0.01
    with pytest.raises(InvalidResult, match="history validation_accuracy before epoch 3"):
        check(spec, state, data, resume_state=honest)


def test_a_follow_up_of_poisoned_moments_passes_its_own_check(spec, honest, data):
    """Not caught later: the follow-up trained honestly from the (validated) poisoned state, so
    poisoned moments must be caught when the result holding them is checked."""
    poisoned = forged(honest, 0, exp_avg=scaled(honest.networks[0].exp_avg, 0.5))
    follow = follow_up_spec()
    state = train(follow, training.continue_state(follow, copy.deepcopy(poisoned)))
    check(follow, state, data, resume_state=poisoned)


class Net:
    def __init__(self, epochs):
        self.epochs, self.start_epoch = epochs, 0


def plan(epochs, seed=1):
    return plan_reexecution(type("State", (), {"networks": [Net(e) for e in epochs]})(), np.random.default_rng(seed))


def test_an_honest_ds3_result_passes():
    spec = make_spec("DS3", "automaton-000", networks=2, seed=1, max_epochs=50, epoch_budget=2)
    spec = with_data(spec, train_size=64, validation_size=64)
    check(spec, train(spec), task_data(spec))


def test_the_plan_spends_two_percent_on_first_epochs_of_long_networks():
    drawn = plan([200] * 32)
    assert [e for _, e in drawn] == [1] * int(0.02 * 32 * 200 / ALONE_COST["gru"]) == [1] * 25
    assert len({i for i, _ in drawn}) == 25


def test_the_plan_re_trains_short_networks_to_their_end():
    for seed in range(20):
        drawn = plan([2] * 8 + [200] * 24, seed)
        assert sum(e for _, e in drawn) == int(0.02 * (8 * 2 + 24 * 200) / ALONE_COST["gru"]) == 19
        assert all(e == (2 if i < 8 else 1) for i, e in drawn[:-1])  # the last may be cut to 1
    assert len({plan([2] * 8 + [200] * 24, seed)[0][0] for seed in range(50)}) > 10  # drawn by the rng


def test_the_plan_re_trains_at_least_one_epoch():
    assert [e for _, e in plan([3] * 32)] == [1]
