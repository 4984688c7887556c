"""DS3 automata (spec §5): the three structural properties, determinism, and a pinned fingerprint.

The fingerprint is the loud alarm: if a refactor, a NumPy release or a platform changes a single
transition or output of the automata every volunteer regenerates, this file fails.
"""

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machines import DS3_COUNT, Automaton, automaton
from machines.automata import structure
from machines.random_stream import derive_seed

ALL = [automaton(index) for index in range(DS3_COUNT)]

# sha256 over transitions then state_outputs (little-endian int64) of automata 0, 1 and 99.
PINNED_FINGERPRINT = "dfa78fa87ba4bc0d2ba8c5c60dfec8d09e3794b4c9cdb1e1cc49f1b3b338f0f0"


def _fingerprint(automata):
    digest = hashlib.sha256()
    for machine in automata:
        digest.update(machine.transitions.astype("<i8").tobytes())
        digest.update(machine.state_outputs.astype("<i8").tobytes())
    return digest.hexdigest()


def _silent_moves(machine):
    """Boolean [S, A]: the transition changes the state but not the output."""
    sources = np.arange(machine.state_count)[:, None]
    targets = machine.transitions
    return (targets != sources) & (machine.state_outputs[targets] == machine.state_outputs[sources])


def test_names_seeds_and_default_sizes():
    assert DS3_COUNT == 100
    assert [m.name for m in ALL[:2]] == ["automaton-000", "automaton-001"]
    assert ALL[99].name == "automaton-099"
    for index, machine in enumerate(ALL):
        assert isinstance(machine, Automaton)
        assert machine.index == index
        assert machine.seed == derive_seed("mlds", "DS3", "automaton", index)
        assert machine.transitions.shape == (12, 4)
        assert machine.state_outputs.shape == (12,)
        assert machine.transitions.dtype == machine.state_outputs.dtype == np.int64
        assert machine.output_count == 6
    assert len({m.seed for m in ALL}) == DS3_COUNT


@pytest.mark.parametrize("machine", ALL, ids=lambda m: m.name)
def test_hamiltonian_cycle(machine):
    cycle = [int(state) for state in machine.cycle]
    assert sorted(cycle) == list(range(machine.state_count))
    for position, state in enumerate(cycle):
        successor = cycle[(position + 1) % len(cycle)]
        assert successor in machine.transitions[state]


@pytest.mark.parametrize("machine", ALL, ids=lambda m: m.name)
def test_transitions_total_and_outputs_onto(machine):
    assert machine.transitions.min() >= 0
    assert machine.transitions.max() < machine.state_count
    assert machine.output_count < machine.state_count
    assert sorted(set(machine.state_outputs.tolist())) == list(range(machine.output_count))


def test_identical_on_every_call():
    for index in (0, 1, 57, 99):
        first, second = automaton(index), automaton(index)
        assert first.seed == second.seed
        np.testing.assert_array_equal(first.transitions, second.transitions)
        np.testing.assert_array_equal(first.state_outputs, second.state_outputs)
        np.testing.assert_array_equal(first.cycle, second.cycle)


def test_pinned_fingerprint():
    assert _fingerprint([ALL[0], ALL[1], ALL[99]]) == PINNED_FINGERPRINT


def test_automata_differ():
    tables = {m.transitions.tobytes() + m.state_outputs.tobytes() for m in ALL}
    assert len(tables) == DS3_COUNT


def test_arrays_are_read_only():
    with pytest.raises(ValueError):
        ALL[0].transitions[0, 0] = 1
    with pytest.raises(ValueError):
        ALL[0].state_outputs[0] = 1


def test_hidden_states_in_most_automata():
    share = np.mean([_silent_moves(m).any() for m in ALL])
    print(f"\nshare of automata with a state-changing, output-preserving transition: {share:.2f}")
    assert share >= 0.9


def test_self_loops_exist_somewhere():
    # spec §5.2: uniform targets include the source, so some inputs leave the state unchanged.
    sources = np.arange(12)[:, None]
    assert any((m.transitions == sources).any() for m in ALL)


def _reference_run(machine, inputs):
    state, outputs = 0, []
    for symbol in inputs:
        state = machine.transitions[state][symbol]
        outputs.append(machine.state_outputs[state])
    return outputs


@settings(max_examples=100, deadline=None)
@given(
    index=st.integers(0, DS3_COUNT - 1),
    rows=st.lists(st.lists(st.integers(0, 3), min_size=7, max_size=7), min_size=1, max_size=5),
)
def test_run_matches_respond_and_definition(index, rows):
    machine = ALL[index]
    outputs = machine.respond(np.array(rows))
    assert outputs.shape == (len(rows), 7) and outputs.dtype == np.int64
    for row, answer in zip(rows, outputs):
        assert machine.run(row) == answer.tolist() == _reference_run(machine, row)


def test_run_starts_in_state_zero():
    machine = ALL[3]
    for symbol in range(4):
        assert machine.run([symbol]) == [machine.state_outputs[machine.transitions[0, symbol]]]
    assert machine.run([]) == []


def test_generate_is_deterministic_and_uniform():
    machine = ALL[5]
    inputs, outputs = machine.generate(200, 30, seed=11)
    again_inputs, again_outputs = machine.generate(200, 30, seed=11)
    other_inputs, _ = machine.generate(200, 30, seed=12)
    np.testing.assert_array_equal(inputs, again_inputs)
    np.testing.assert_array_equal(outputs, again_outputs)
    assert not np.array_equal(inputs, other_inputs)
    assert inputs.shape == outputs.shape == (200, 30)
    assert inputs.dtype == outputs.dtype == np.int64
    np.testing.assert_array_equal(outputs, machine.respond(inputs))
    shares = np.bincount(inputs.ravel(), minlength=4) / inputs.size
    assert np.allclose(shares, 0.25, atol=0.02)


def test_shared_sets():
    machine = ALL[7]
    train, validation = machine.shared_set("train"), machine.shared_set("validation")
    assert train.seed == derive_seed("mlds", "DS3", "automaton-007", "train")
    assert validation.seed == derive_seed("mlds", "DS3", "automaton-007", "validation")
    assert train.inputs.shape == train.outputs.shape == (4000, 50)  # SPEC_VERSION 8
    assert validation.inputs.shape == (1000, 50)
    # the first 1,000 are the set of SPEC_VERSION 1-7: one stream's draws, row by row
    np.testing.assert_array_equal(machine.shared_set("train", n=1000).inputs, train.inputs[:1000])
    assert not np.array_equal(train.inputs[:1000], validation.inputs)
    np.testing.assert_array_equal(train.inputs, machine.shared_set("train").inputs)
    np.testing.assert_array_equal(train.outputs, machine.respond(train.inputs))
    with pytest.raises(ValueError, match="train"):
        machine.shared_set("test")


def test_encode_inputs_is_one_hot():
    encoded = ALL[0].encode_inputs(np.array([[0, 3, 1]]))
    assert encoded.shape == (1, 3, 4) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded[0], np.eye(4, dtype=np.float32)[[0, 3, 1]])


@pytest.mark.parametrize("index", [-1, 100, 1000])
def test_index_out_of_range(index):
    with pytest.raises(ValueError, match="0..99"):
        automaton(index)


def test_index_must_be_an_integer():
    with pytest.raises(ValueError, match="0..99"):
        automaton(1.5)


@pytest.mark.parametrize(
    "sizes",
    [dict(states=6, outputs=6), dict(states=6, outputs=8), dict(inputs=0), dict(outputs=0), dict(states=0)],
)
def test_impossible_sizes(sizes):
    with pytest.raises(ValueError):
        automaton(0, **sizes)


@settings(max_examples=50, deadline=None)
@given(states=st.integers(2, 20), inputs=st.integers(1, 6), data=st.data())
def test_properties_hold_for_other_sizes(states, inputs, data):
    outputs = data.draw(st.integers(1, states - 1))
    machine = automaton(data.draw(st.integers(0, 99)), states=states, inputs=inputs, outputs=outputs)
    assert machine.transitions.shape == (states, inputs)
    assert sorted(set(machine.state_outputs.tolist())) == list(range(outputs))
    cycle = machine.cycle.tolist()
    assert sorted(cycle) == list(range(states))
    for position, state in enumerate(cycle):
        assert cycle[(position + 1) % states] in machine.transitions[state]


def test_invalid_input_symbols():
    with pytest.raises(ValueError):
        ALL[0].run([0, 4])
    with pytest.raises(ValueError):
        ALL[0].respond(np.array([[0, -1]]))


def _hand_built(transitions, outputs, name="automaton-000"):
    transitions, outputs = np.array(transitions), np.array(outputs)
    return Automaton(index=0, name=name, seed=0, transitions=transitions, state_outputs=outputs,
                     cycle=np.arange(len(outputs)), output_count=int(outputs.max()) + 1)  # fmt: skip


def test_structure_merges_equivalent_states_and_ignores_unreachable_ones():
    # states 1 and 2 both emit 1 and behave alike (equivalent); state 3 is never reached
    machine = _hand_built([[1, 2], [0, 2], [0, 1], [3, 3]], [0, 1, 1, 0])
    shape = structure(machine)
    assert (shape.states, shape.reachable_states, shape.minimal_states) == (4, 3, 2)
    assert (shape.hidden_states, shape.output_symbols) == (0, 2)


def test_structure_of_a_reset_machine_needs_one_input_of_memory():
    # every input sends every state to the state of that input's number: the last input says all
    machine = _hand_built([[0, 1, 2]] * 3, [0, 1, 0])
    shape = structure(machine)
    assert shape.mean_memory == 1.0
    assert shape.whole_prefix_share == 0.0


def test_structure_of_a_counter_needs_the_whole_prefix():
    # a counter modulo 3 that input 1 advances: no suffix tells the count, only the start state
    machine = _hand_built([[0, 1], [1, 2], [2, 0]], [0, 1, 0])
    shape = structure(machine)
    assert shape.whole_prefix_share == 1.0
    assert shape.mean_memory == pytest.approx((50 + 1) / 2)  # t + 1 averaged over 50 steps
    assert shape.majority_share == pytest.approx(2 / 3, abs=1e-6)  # uniform over 3 states, output 0 twice


def test_every_ds3_automaton_is_minimal_with_six_hidden_states():
    """The defaults make every state reachable (the cycle) and distinguishable; docs/difficulty.md
    relies on this when it relates difficulty to memory rather than to state counts."""
    shapes = [structure(m) for m in ALL[::5]]
    assert {(s.reachable_states, s.minimal_states, s.hidden_states, s.output_symbols) for s in shapes} == {(12, 12, 6, 6)}
    assert all(0 < s.whole_prefix_share < 1 and 1 < s.mean_memory < 50 for s in shapes)
