"""Determinism, exact resume and continuation of the training loop (in-process)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from boinc_app import training
from boinc_app.networks import flatten_tensors, parameter_layout
from boinc_app.task_data import task_data
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.result_file import read_result
from boinc_app.workunit_spec import SpecError, spec_from_dict, write_spec
from tests.conftest import SilentControl
from workgen.specs import make_spec, with_data, with_recipe


class QuitAfter(SilentControl):
    """Asks to quit after ``epochs`` epochs, as BOINC's <quit/> or SIGTERM would."""

    def __init__(self, write_checkpoint, epochs):
        super().__init__(write_checkpoint)
        self.epochs, self.seen = epochs, 0

    def report_progress(self, state, fraction):
        self.seen += 1

    def quit_requested(self):
        return self.seen >= self.epochs


def assert_same_networks(a, b):
    assert [n.key for n in a.networks] == [n.key for n in b.networks]
    for x, y in zip(a.networks, b.networks):
        assert (x.epochs, x.status, x.adam_step, x.restart_epochs) == (y.epochs, y.status, y.adam_step, y.restart_epochs)
        for key in x.weights:
            assert np.array_equal(x.weights[key], y.weights[key]), key
            assert np.array_equal(x.exp_avg_sq[key], y.exp_avg_sq[key]), key
        for name in training.HISTORY_FIELDS:
            assert np.array_equal(x.history[name], y.history[name]), name
        assert sorted(x.snapshots) == sorted(y.snapshots)
        for epoch in x.snapshots:
            assert np.array_equal(x.snapshots[epoch], y.snapshots[epoch]), epoch


def train_fresh(spec):
    state = training.initial_state(spec)
    return training.train(spec, task_data(spec), state, SilentControl())


@pytest.fixture(scope="module")
def spec():
    spec = make_spec("DS2", "SingleDirectModified", networks=2, seed=3, max_epochs=3)
    return dataclasses.replace(spec, snapshot_epochs=(1, 3))  # resumes, follow-ups and groupings keep them


@pytest.fixture(scope="module")
def uninterrupted(spec):
    return train_fresh(spec)


def test_same_spec_gives_bitwise_identical_weights_and_history(spec, uninterrupted):
    assert_same_networks(train_fresh(spec), uninterrupted)


def test_a_snapshot_holds_the_weights_a_network_had_after_that_epoch(spec, uninterrupted):
    [shorter] = train_fresh(dataclasses.replace(spec, networks=spec.networks[:1], max_epochs=1, epoch_budget=1)).networks
    network = uninterrupted.networks[0]
    assert sorted(network.snapshots) == [1, 3] and network.epochs == 3
    layout = parameter_layout(spec.architecture)
    assert np.array_equal(network.snapshots[1], flatten_tensors(shorter.weights, layout))
    assert np.array_equal(network.snapshots[3], flatten_tensors(network.weights, layout))
    assert not np.array_equal(network.snapshots[1], network.snapshots[3])


@pytest.mark.parametrize("quit_after", [1, 2])
def test_resume_after_quit_is_exact(tmp_path, spec, uninterrupted, quit_after):
    spec_path, out = tmp_path / "spec.json", tmp_path / "result.h5"
    write_spec(spec, spec_path)
    config = TrainerConfig(str(spec_path), str(out))
    with pytest.raises(training.QuitRequested):
        run_trainer(config, lambda write: QuitAfter(write, quit_after))
    assert not out.exists()
    _, checkpoint, attrs = read_result(config.checkpoint, spec=spec)
    assert attrs["complete"] is False or not attrs["complete"]
    assert all(n.epochs == quit_after for n in checkpoint.networks)
    finished = run_trainer(config, SilentControl)
    assert_same_networks(finished, uninterrupted)
    assert not (tmp_path / "result.h5.checkpoint").exists()
    assert_same_networks(read_result(out, spec=spec)[1], uninterrupted)


class QuitDuringBatch(SilentControl):
    """Raises ``QuitRequested`` at the ``at``-th call between optimizer steps."""

    def __init__(self, at):
        super().__init__(lambda state: None)
        self.at, self.calls = at, 0

    def wait_while_suspended(self):
        self.calls += 1
        if self.calls == self.at:
            raise training.QuitRequested()


def test_quitting_between_ensemble_groups_resumes_exactly():
    """Three networks in groups of two: a quit during the second group's epoch leaves the first
    group one epoch ahead; continuing from that state gives the uninterrupted result."""
    spec = make_spec("DS1", "ParityMachine", networks=3, seed=5, max_epochs=2)
    data = task_data(spec)
    uninterrupted = training.train(spec, data, training.initial_state(spec), SilentControl(), group_size=2)
    batches = -(-spec.data.train_size // spec.recipe.batch_size)
    state = training.initial_state(spec)
    # calls per epoch: 1 before the groups, then one per batch of each group
    quit_at = (1 + 2 * batches) + 1 + batches + 5
    with pytest.raises(training.QuitRequested):
        training.train(spec, data, state, QuitDuringBatch(quit_at), group_size=2)
    assert [n.epochs for n in state.networks] == [2, 2, 1]
    assert_same_networks(training.train(spec, data, state, SilentControl(), group_size=2), uninterrupted)


def trained_on_threads(spec, threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train_fresh(spec)
    finally:
        torch.set_num_threads(previous)


def test_a_network_trains_bitwise_alike_alone_and_in_an_ensemble(spec, uninterrupted):
    """What the validator's re-execution needs (docs/spot-check.md §7): network 1 trained alone
    on one thread, as the server re-trains it, equals it trained in the workunit's ensemble,
    bitwise, over every epoch. Under float32 clip-norm sums (before SPEC_VERSION 7) they parted by
    ~1e-3 within an epoch on some seeds; float32 stays available for old specs and still trains."""
    alone = trained_on_threads(dataclasses.replace(spec, networks=spec.networks[1:]), 1)
    assert spec.recipe.clip_norm_sum == "float64"
    assert_same_networks(alone, dataclasses.replace(uninterrupted, networks=uninterrupted.networks[1:]))
    old = with_recipe(dataclasses.replace(spec, max_epochs=1, epoch_budget=1), clip_norm_sum="float32")
    assert all(n.epochs == 1 and np.isfinite(n.history["train_loss"][0]) for n in train_fresh(old).networks)


def test_two_threads_train_within_the_spot_check_s_tolerance(spec, uninterrupted):
    """Two threads were bitwise equal here too, but not in a CI run on a loaded machine (MKL may
    change how it splits work at run time), so only the spot check's 3-epoch tolerances are
    promised; BOINC app versions run one thread (docs/packaging.md)."""
    alone = trained_on_threads(dataclasses.replace(spec, networks=spec.networks[1:]), 2).networks[0]
    reference = uninterrupted.networks[1]
    weights = (flatten_tensors(n.weights, parameter_layout(spec.architecture)) for n in (alone, reference))
    a, b = (w.astype(np.float64) for w in weights)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) <= 1e-2  # spot_check.TOLERANCES at 3 epochs
    np.testing.assert_allclose(alone.history["train_loss"], reference.history["train_loss"], rtol=3e-5)


def test_continuation_workunit_continues_exactly(tmp_path, spec, uninterrupted):
    first = dataclasses.replace(spec, epoch_budget=2)
    write_spec(first, tmp_path / "first.json")
    run_trainer(TrainerConfig(str(tmp_path / "first.json"), str(tmp_path / "first.h5")), SilentControl)
    second = dataclasses.replace(spec, epoch_budget=2, resume_from="first.h5")
    write_spec(second, tmp_path / "second.json")
    state = run_trainer(TrainerConfig(str(tmp_path / "second.json"), str(tmp_path / "second.h5")), SilentControl)
    assert all(n.start_epoch == 2 for n in state.networks)
    for network in state.networks:
        network.start_epoch = 0
    assert_same_networks(state, uninterrupted)


def test_budget_leaves_networks_training_and_cap_marks_them_capped(spec, uninterrupted):
    assert all(n.status == training.CAPPED and n.epochs == 3 for n in uninterrupted.networks)
    partial = train_fresh(dataclasses.replace(spec, epoch_budget=1))
    assert all(n.status == training.TRAINING and n.epochs == 1 for n in partial.networks)
    assert partial.fraction_done(1) == 1.0


def test_batch_order_is_a_permutation_that_changes_every_epoch():
    first, second = training.batch_order(7, 0, 1000), training.batch_order(7, 1, 1000)
    assert sorted(first) == list(range(1000))
    assert not np.array_equal(first, second)
    assert np.array_equal(first, training.batch_order(7, 0, 1000))


def test_curriculum_length_grows_from_the_start_length_to_full():
    from boinc_app.recipe import Recipe

    recipe = Recipe(curriculum_epochs=4, curriculum_start_length=10)
    assert [training.curriculum_length(recipe, e, 50) for e in range(6)] == [10, 20, 30, 40, 50, 50]
    assert training.curriculum_length(Recipe(), 0, 50) == 50


def test_a_network_on_a_curriculum_trains_the_same_beside_one_without():
    """Per-network lengths: masking another network's longer steps changes nothing for it."""
    spec = make_spec("DS1", "ParityMachine", networks=1, seed=2, max_epochs=1)
    with_curriculum = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, curriculum_epochs=5))
    data = task_data(with_curriculum)
    alone = training.initial_state(with_curriculum).networks
    training.run_epoch(with_curriculum, data, alone, np.zeros(1, dtype=np.int64))
    mixed = training.initial_state(with_curriculum).networks + training.initial_state(spec).networks
    mixed[1].epochs = 5  # past its curriculum: full length
    training.run_epoch(with_curriculum, data, mixed, np.zeros(2, dtype=np.int64))
    for key in alone[0].weights:
        # rounding only (ensembles of one and two networks); training this network on full-length
        # sequences instead moves some weights by 0.5 in this epoch
        np.testing.assert_allclose(mixed[0].weights[key], alone[0].weights[key], rtol=1e-4, atol=1e-5)


def test_initialisation_options_shift_gate_biases_and_make_recurrent_blocks_orthogonal():
    from workgen.specs import with_recipe

    plain_spec = make_spec("DS1", "ParityMachine", networks=1, seed=4)
    plain = training.initial_state(plain_spec).networks[0].weights
    changed = training.initial_state(with_recipe(plain_spec, gate_bias=1.0, recurrent_orthogonal_gain=0.9)).networks[0].weights
    for layer in range(4):
        bias = f"rnn.bias_hh_l{layer}"
        np.testing.assert_allclose(changed[bias][12:24], plain[bias][12:24] + 1.0, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(changed[bias][:12], plain[bias][:12])
        for start in (0, 12, 24):
            block = changed[f"rnn.weight_hh_l{layer}"][start : start + 12]
            np.testing.assert_allclose(block @ block.T, 0.81 * np.eye(12), atol=1e-5)
    np.testing.assert_array_equal(changed["rnn.weight_ih_l0"], plain["rnn.weight_ih_l0"])
    again = training.initial_state(with_recipe(plain_spec, recurrent_orthogonal_gain=0.9)).networks[0].weights
    np.testing.assert_array_equal(again["rnn.weight_hh_l3"], changed["rnn.weight_hh_l3"])


def _network_with_accuracies(accuracies, restart_epochs=()):
    network = training.initial_state(make_spec("DS1", "SingleDirectMachine")).networks[0]
    network.history["validation_accuracy"] = list(accuracies)
    network.restart_epochs = list(restart_epochs)
    return network


@pytest.mark.parametrize(
    "accuracies, restarts, expected",
    [
        ([0.5, 0.9, 0.9, 0.9], (), True),  # best 0.9 both before and within the last 2 epochs
        ([0.5, 0.9, 0.9, 0.9005], (), True),  # a gain below restart_min_gain (0.001)
        ([0.5, 0.9, 0.9, 0.902], (), False),
        ([0.5, 0.9, 0.9], (), False),  # no more epochs than the patience since the start
        ([0.5, 0.9, 0.9, 0.9, 0.6, 0.7], (4,), False),  # the window restarts with the network
        ([0.5, 0.9, 0.9, 0.9, 0.6, 0.6, 0.6], (4,), True),
    ],
)
def test_the_rule_compares_the_best_accuracy_before_and_within_the_patience(accuracies, restarts, expected):
    recipe = make_spec("DS1", "SingleDirectMachine").recipe
    recipe = dataclasses.replace(recipe, restart_patience=2, restart_min_gain=0.001, restart_min_share=0.0)
    assert training.restart_due(recipe, _network_with_accuracies(accuracies, restarts)) is expected


@pytest.mark.parametrize(
    "accuracies, expected",
    [
        ([0.9, 0.9, 0.95], True),  # 0.05 of the 0.1 left: less than the share 0.6 asks
        ([0.9, 0.9, 0.97], False),  # 0.07 >= 0.6 * 0.1
        ([0.99, 0.99, 0.9961], False),  # near the top a small rise is progress: 0.0061 >= 0.006
        ([0.99, 0.99, 0.9959], True),
        ([0.5, 0.5, 0.5005], True),  # the absolute floor restart_min_gain (0.001) still holds
    ],
)
def test_the_gain_asked_for_can_be_a_share_of_the_error_left(accuracies, expected):
    recipe = make_spec("DS1", "SingleDirectMachine").recipe
    recipe = dataclasses.replace(recipe, restart_patience=1, restart_min_gain=0.001, restart_min_share=0.6)
    assert training.restart_due(recipe, _network_with_accuracies(accuracies)) is expected


@pytest.mark.parametrize(
    "accuracies, restarts, expected",
    [
        ([0.5, 0.6, 0.7], (), True),  # a third epoch since the start, climbing or not
        ([0.5, 0.6], (), False),
        ([0.5, 0.6, 0.7, 0.8, 0.9], (3,), False),  # counted from the last restart
        ([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], (3,), True),
    ],
)
def test_an_attempt_restarts_once_it_has_trained_restart_after_epochs(accuracies, restarts, expected):
    recipe = dataclasses.replace(make_spec("DS1", "SingleDirectMachine").recipe, restart_patience=0, restart_after=3)
    assert training.restart_due(recipe, _network_with_accuracies(accuracies, restarts)) is expected


@pytest.mark.parametrize(
    "patience, gain, share, after",
    [(2, 0.001, 0, 0), (3, 0.05, 0, 0), (1, 0.01, 0, 0), (4, 0.01, 0, 5), (0, 0.001, 0, 7), (2, 0.0, 0.5, 0), (3, 0.01, 0.3, 9)],
)
def test_replayed_restarts_match_asking_the_rule_after_every_epoch(patience, gain, share, after):
    recipe = make_spec("DS1", "SingleDirectMachine").recipe
    changes = dict(restart_patience=patience, restart_min_gain=gain, restart_min_share=share, restart_after=after)
    recipe = dataclasses.replace(recipe, **changes)
    accuracy = list(np.random.default_rng(patience).choice([0.5, 0.7, 0.9, 0.95], size=60))
    network = _network_with_accuracies([])
    for value in accuracy:
        network.history["validation_accuracy"].append(value)
        if training.restart_due(recipe, network):
            network.restart_epochs.append(len(network.history["validation_accuracy"]))
    assert training.replay_restarts(recipe, accuracy, True) == network.restart_epochs
    assert network.restart_epochs  # the case exercises restarts


def test_restart_patience_zero_never_restarts_and_devices_restart_their_head_since_spec_version_6():
    recipe = make_spec("DS1", "SingleDirectMachine").recipe
    assert (recipe.restart_patience, recipe.restart_min_gain, recipe.restart_min_share) == (30, 0.0001, 0.1)
    assert training.restart_kind(recipe, 1) == training.restart_kind(recipe, 2) == "head"
    assert training.restart_due(recipe, _network_with_accuracies([0.5] * 31))
    assert not training.restart_due(recipe, _network_with_accuracies([0.5] * 30))
    off = dataclasses.replace(recipe, restart_patience=0)
    assert not training.restart_due(off, _network_with_accuracies([0.5] * 500))
    assert make_spec("DS3", "automaton-000").recipe.restart_patience == 0


@pytest.fixture(scope="module")
def restarting_spec():
    """Every network counts as stalled once it has two epochs since its last start, and restarts
    in full."""
    spec = make_spec("DS1", "ParityMachine", networks=2, seed=7, max_epochs=5)
    spec = with_data(spec, train_size=64, validation_size=32)
    return with_recipe(spec, restart_patience=1, restart_min_gain=1.0, restart_kinds="full")


def test_a_stalled_network_starts_again_from_its_restart_seed(restarting_spec):
    spec = restarting_spec
    state = train_fresh(dataclasses.replace(spec, epoch_budget=2))
    for network in state.networks:
        assert network.restart_epochs == [2] and network.epochs == 2 and network.adam_step == 0
        fresh = training.initial_weights(spec.architecture, spec.recipe, training.restart_seed(network.init_seed, 1))
        for key, value in fresh.items():
            assert np.array_equal(network.weights[key], value), key
            assert not network.exp_avg[key].any() and not network.exp_avg_sq[key].any()
    assert len(state.networks[0].history["validation_accuracy"]) == 2  # the history goes on
    assert training.restart_seed(7, 1) != training.restart_seed(7, 2) != training.restart_seed(8, 1)


def test_a_head_restart_renews_the_head_and_keeps_the_recurrent_stack(restarting_spec):
    spec = with_recipe(restarting_spec, restart_kinds="head,full")
    before = train_fresh(dataclasses.replace(spec, epoch_budget=1, max_epochs=1)).networks[0]
    network = train_fresh(dataclasses.replace(spec, epoch_budget=2)).networks[0]
    assert network.restart_epochs == [2] and network.adam_step == 2 * 2  # two batches per epoch, not reset
    fresh = training.initial_weights(spec.architecture, spec.recipe, training.restart_seed(network.init_seed, 1))
    for key, value in network.weights.items():
        if key.startswith("head."):
            assert np.array_equal(value, fresh[key]) and not network.exp_avg[key].any(), key
        else:  # trained on through epoch 2, not re-drawn
            assert not np.array_equal(value, fresh[key]) and not np.array_equal(value, before.weights[key]), key
            assert network.exp_avg_sq[key].any(), key
    assert [training.restart_kind(spec.recipe, n) for n in (1, 2, 3)] == ["head", "full", "head"]


@pytest.mark.parametrize("kinds", ["head,gru", "", 5, None])
def test_a_spec_with_an_unknown_restart_kind_is_refused(restarting_spec, kinds):
    document = json.loads(restarting_spec.to_json())
    document["recipe"]["restart_kinds"] = kinds
    with pytest.raises(SpecError, match=f"unknown restart kinds {kinds!r}"):
        spec_from_dict(document)


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("restart_patience", "30", "a whole number >= 0"),
        ("restart_patience", -1, "a whole number >= 0"),
        ("restart_after", 2.5, "a whole number >= 0"),
        ("restart_min_share", float("nan"), "a number from 0 to 1"),
        ("restart_min_gain", 2, "a number from 0 to 1"),
        ("restart_min_share", True, "a number from 0 to 1"),
    ],
)
def test_a_spec_with_a_bad_restart_number_is_refused(restarting_spec, name, value, problem):
    document = json.loads(restarting_spec.to_json())
    document["recipe"][name] = value
    with pytest.raises(SpecError, match=f"recipe {name} must be {problem}"):
        spec_from_dict(document)


@pytest.mark.parametrize("quit_after", [2, 3])
@pytest.mark.parametrize("kinds", ["full", "head,full"])
def test_resume_across_a_restart_is_exact(tmp_path, restarting_spec, quit_after, kinds):
    restarting_spec = with_recipe(restarting_spec, restart_kinds=kinds)
    uninterrupted = train_fresh(restarting_spec)
    assert uninterrupted.networks[0].restart_epochs == [2, 4]
    for network in uninterrupted.networks:  # capped at epoch 5: the rule was not asked after it
        accuracy = network.history["validation_accuracy"]
        assert training.replay_restarts(restarting_spec.recipe, accuracy, False) == network.restart_epochs
        assert training.replay_restarts(restarting_spec.recipe, accuracy[:4], True) == [2, 4]
    spec_path, out = tmp_path / "spec.json", tmp_path / "result.h5"
    write_spec(restarting_spec, spec_path)
    config = TrainerConfig(str(spec_path), str(out))
    with pytest.raises(training.QuitRequested):
        run_trainer(config, lambda write: QuitAfter(write, quit_after))
    run_trainer(config, SilentControl)
    assert_same_networks(read_result(out, spec=restarting_spec)[1], uninterrupted)
