"""DS1/DS2 devices and their sequences (spec §1-§3), checked against a re-statement of the spec.

The oracle below is written from the spec's table and trigger rule alone, on purpose sharing no
code with ``machines``: if both were wrong in the same way, a shared helper would hide it.
"""

import hashlib
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import machines
from machines import DS1_NAMES, DS2_NAMES, MACHINE_NAMES, generate, get_machine, shared_set
from machines.devices import encode_inputs, encode_outputs

# --- the oracle: spec §1 table and §2 trigger, one step at a time -------------------------------

NOP_, WRITE_, READ_ = 0, 1, 2
TRIGGER_STEPS = [(WRITE_, 0xA5), (WRITE_, 0x5A), (WRITE_, 0xA5)]
SPEC_TABLE = {  # base: (mask, new state on WRITE d, output byte on READ d)
    "SingleDirect": (0x01, lambda s, d: d & 1, lambda s, d: s),
    "SingleInvert": (0x01, lambda s, d: d & 1, lambda s, d: 1 - s),
    "SimpleXOR": (0x01, lambda s, d: d & 1, lambda s, d: s ^ (d & 1)),
    "Parity": (0x01, lambda s, d: s ^ (d & 1), lambda s, d: s),
    "EightBit": (0xFF, lambda s, d: d, lambda s, d: s),
}


def oracle(name, steps):
    """``(outputs, inverted)`` per step; ``inverted`` marks the 3 READs after a trigger."""
    base = name.removesuffix("Machine").removesuffix("Modified")
    mask, on_write, on_read = SPEC_TABLE[base]
    state, pending, outputs, inverted = 0, 0, [], []
    for t, (command, byte) in enumerate(steps):
        output, flips = 0, False
        if command == WRITE_:
            state = on_write(state, byte)
            if steps[max(0, t - 2) : t + 1] == TRIGGER_STEPS:
                pending = 3
        elif command == READ_:
            output, flips = on_read(state, byte) & mask, pending > 0
            pending = max(0, pending - 1)
            if flips and name.endswith("Modified"):
                output ^= mask
        outputs.append(output)
        inverted.append(flips)
    return outputs, inverted


# --- strategies --------------------------------------------------------------------------------

BYTE = st.one_of(st.integers(0, 255), st.sampled_from([0xA5, 0x5A]))
STEP = st.tuples(st.sampled_from([NOP_, WRITE_, READ_]), BYTE)
OVERLAPPING = [(WRITE_, 0xA5), (WRITE_, 0x5A), (WRITE_, 0xA5), (WRITE_, 0x5A), (WRITE_, 0xA5)]
PIECE = st.one_of(
    STEP.map(lambda step: [step]),
    st.just(TRIGGER_STEPS),
    st.just(OVERLAPPING),
    st.just(TRIGGER_STEPS[:2]),
    st.lists(st.tuples(st.just(READ_), BYTE), min_size=1, max_size=4),
)
SEQUENCE = st.lists(PIECE, max_size=16).map(lambda pieces: [step for piece in pieces for step in piece])
NAME = st.sampled_from(MACHINE_NAMES)
NO_A5 = st.integers(0, 255).filter(lambda d: d != 0xA5)


def split(steps):
    return [c for c, _ in steps], [d for _, d in steps]


def as_batch(steps):
    commands, data = split(steps)
    return np.array([commands], dtype=np.int64).reshape(1, -1), np.array([data], dtype=np.int64).reshape(1, -1)


# --- every machine against the oracle ----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(name=NAME, steps=SEQUENCE)
def test_run_and_respond_match_the_oracle(name, steps):
    machine = get_machine(name)
    expected, inverted = oracle(name, steps)
    assert machine.run(*split(steps)) == expected
    response = machine.respond(*as_batch(steps))
    assert response.outputs[0].tolist() == expected
    assert response.post_trigger[0].tolist() == inverted


@settings(max_examples=150, deadline=None)
@given(name=NAME, steps=SEQUENCE)
def test_mask_and_silent_steps(name, steps):
    machine = get_machine(name)
    outputs = machine.run(*split(steps))
    for (command, _), output in zip(steps, outputs):
        assert output & ~machine.mask == 0
        if command != READ_:
            assert output == 0


@settings(max_examples=150, deadline=None)
@given(base=st.sampled_from([n.removesuffix("Machine") for n in DS1_NAMES]), steps=SEQUENCE)
def test_ds2_is_ds1_inverted_exactly_on_post_trigger_reads(base, steps):
    plain, modified = get_machine(f"{base}Machine"), get_machine(f"{base}Modified")
    one, two = plain.respond(*as_batch(steps)), modified.respond(*as_batch(steps))
    np.testing.assert_array_equal(one.post_trigger, two.post_trigger)
    flips = np.where(two.post_trigger, modified.mask, 0)
    np.testing.assert_array_equal(two.outputs, one.outputs ^ flips)


@settings(max_examples=150, deadline=None)
@given(
    base=st.sampled_from([n.removesuffix("Machine") for n in DS1_NAMES]),
    steps=st.lists(st.tuples(st.sampled_from([NOP_, WRITE_, READ_]), NO_A5)),
)
def test_ds1_equals_ds2_without_trigger(base, steps):
    commands, data = split(steps)
    plain, modified = get_machine(f"{base}Machine"), get_machine(f"{base}Modified")
    assert plain.run(commands, data) == modified.run(commands, data)


@settings(max_examples=100, deadline=None)
@given(name=NAME, length=st.integers(1, 40), data=st.data())
def test_run_equals_respond_on_batches(name, length, data):
    rows = data.draw(st.lists(st.lists(STEP, min_size=length, max_size=length), min_size=1, max_size=6))
    machine = get_machine(name)
    commands = np.array([[c for c, _ in row] for row in rows])
    data_bytes = np.array([[d for _, d in row] for row in rows])
    outputs = machine.respond(commands, data_bytes).outputs
    for row, c, d in zip(outputs, commands, data_bytes):
        assert row.tolist() == machine.run(c, d)


# --- hand-written trigger cases (DS2, then the DS1 view of the same steps) ----------------------

W_A5, W_5A, R = (WRITE_, 0xA5), (WRITE_, 0x5A), (READ_, 0)


def direct_reads(steps, stored=1):
    """SingleDirectModified's READ outputs after first storing ``stored``."""
    outputs = get_machine("SingleDirectModified").run(*split([(WRITE_, stored)] + steps))
    return [out for (command, _), out in zip([(WRITE_, stored)] + steps, outputs) if command == READ_]


def test_trigger_inverts_three_reads_then_stops():
    # the trigger writes A5 (bit0 = 1): stored bit is 1, inverted reads give 0
    assert direct_reads([W_A5, W_5A, W_A5, R, R, R, R, R]) == [0, 0, 0, 1, 1]


def test_overlapping_triggers():
    assert direct_reads(OVERLAPPING + [R, R, R, R]) == [0, 0, 0, 1]


def test_second_trigger_resets_count_to_three_not_adds():
    steps = TRIGGER_STEPS + [R] + TRIGGER_STEPS + [R] * 5
    assert direct_reads(steps) == [0, 0, 0, 0, 1, 1]


def test_fewer_than_three_reads_after_trigger():
    assert direct_reads(TRIGGER_STEPS + [R, R]) == [0, 0]


def test_nop_and_write_do_not_consume_the_count():
    steps = TRIGGER_STEPS + [R, (NOP_, 0), (WRITE_, 1), R, (NOP_, 7), R, R]
    assert direct_reads(steps) == [0, 0, 0, 1]


@pytest.mark.parametrize(
    "broken",
    [
        [W_A5, (NOP_, 0), W_5A, W_A5],
        [W_A5, W_5A, (READ_, 0xA5)],
        [W_A5, (WRITE_, 0x5B), W_A5],
        [W_5A, W_A5, W_5A],
    ],
)
def test_almost_triggers_do_nothing(broken):
    steps = broken + [(WRITE_, 1), R, R]
    assert direct_reads(steps)[-2:] == [1, 1]
    commands, data = split(steps)
    plain, modified = get_machine("SingleDirectMachine"), get_machine("SingleDirectModified")
    assert modified.run(commands, data) == plain.run(commands, data)


def test_trigger_writes_act_on_state():
    # EightBit stores the trigger's last byte A5; inverted within mask 0xFF gives 0x5A
    outputs = get_machine("EightBitModified").run(*split(TRIGGER_STEPS + [R, R, R, R]))
    assert outputs[3:] == [0x5A, 0x5A, 0x5A, 0xA5]
    assert get_machine("EightBitMachine").run(*split(TRIGGER_STEPS + [R])) == [0, 0, 0, 0xA5]


# --- encodings ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(name=NAME, steps=SEQUENCE.filter(bool))
def test_encode(name, steps):
    commands, data = split(steps)
    machine = get_machine(name)
    inputs, targets = machine.encode(commands, data)
    assert inputs.shape == (len(steps), 11) and targets.shape == (len(steps), 8)
    assert inputs.dtype == targets.dtype == np.float32
    np.testing.assert_array_equal(inputs[:, :3], np.eye(3, dtype=np.float32)[commands])
    weights = 2 ** np.arange(8)
    np.testing.assert_array_equal(inputs[:, 3:] @ weights, data)
    np.testing.assert_array_equal(targets @ weights, machine.run(commands, data))
    assert set(np.unique(inputs)) <= {0.0, 1.0} and set(np.unique(targets)) <= {0.0, 1.0}


def test_encoding_is_lsb_first():
    row = encode_inputs(np.array([[WRITE_]]), np.array([[0x01]]))[0, 0]
    np.testing.assert_array_equal(row, [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(encode_outputs(np.array([0x80])), [[0, 0, 0, 0, 0, 0, 0, 1]])


# --- generation and the shared sets ------------------------------------------------------------

PINNED_STREAM_1000 = "74623f20ee7d60aebb3e4f28e1902e4d4d660ea46032b71ede5536610f5cd773"  # SPEC_VERSION 1 set size
PINNED_STREAM_2000 = "db5ad64f5ca677a6e67a1cb0a3b0d48d9d6a81be54bb6dbf955883173314b397"  # SPEC_VERSION 2 and 3 set size
PINNED_SINGLE_DIRECT_TRAIN = "e550d252a950fc14e49564a388083d0b243b4e8dd5e21cc9ffc0c57a919af7e6"  # SPEC_VERSION 4: 4,000 sequences


@settings(max_examples=20, deadline=None)
@given(name=NAME, seed=st.integers(0, 2**64 - 1))
def test_generate_is_deterministic(name, seed):
    machine = get_machine(name)
    first, second = generate(machine, 8, 20, seed), generate(machine, 8, 20, seed)
    for field in ("commands", "data", "inputs", "targets", "post_trigger"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    other = generate(machine, 8, 20, (seed + 1) % 2**64)
    assert not (np.array_equal(first.commands, other.commands) and np.array_equal(first.data, other.data))


def test_generate_answers_match_run():
    machine = get_machine("ParityModified")
    sequences = generate(machine, 20, 30, seed=3)
    for commands, data, targets in zip(sequences.commands, sequences.data, sequences.targets):
        assert (targets @ 2 ** np.arange(8)).tolist() == machine.run(commands, data)


@pytest.mark.parametrize("base", [n.removesuffix("Machine") for n in DS1_NAMES])
def test_ds1_and_ds2_share_inputs(base):
    one = shared_set(get_machine(f"{base}Machine"), "train", n=200)
    two = shared_set(get_machine(f"{base}Modified"), "train", n=200)
    assert one.seed == two.seed
    np.testing.assert_array_equal(one.commands, two.commands)
    np.testing.assert_array_equal(one.data, two.data)
    np.testing.assert_array_equal(one.inputs, two.inputs)
    differs = (one.targets != two.targets).any(axis=-1)
    assert not (differs & ~two.post_trigger).any()


def test_train_and_validation_differ():
    machine = get_machine("EightBitMachine")
    train, validation = shared_set(machine, "train", n=50), shared_set(machine, "validation", n=50)
    assert train.seed != validation.seed
    assert not np.array_equal(train.data, validation.data)
    with pytest.raises(ValueError):
        shared_set(machine, "test")


def test_shared_set_statistics():
    sequences = shared_set(get_machine("SingleDirectModified"), "train")
    assert sequences.commands.shape == (4000, 50)
    assert shared_set(get_machine("SingleDirectModified"), "validation").commands.shape == (1000, 50)
    shares = np.bincount(sequences.commands.ravel(), minlength=3) / sequences.commands.size
    # the trigger's three WRITEs shift about 1.5 % of the steps towards WRITE
    assert np.allclose(shares, [0.2, 0.4, 0.4], atol=0.02)
    with_trigger = np.mean([_has_trigger(c, d) for c, d in zip(sequences.commands, sequences.data)])
    assert 0.44 <= with_trigger <= 0.56


def _has_trigger(commands, data):
    steps = list(zip(commands.tolist(), data.tolist()))
    return any(steps[i : i + 3] == TRIGGER_STEPS for i in range(len(steps) - 2))


@pytest.mark.parametrize(
    "size, pinned", [(None, PINNED_SINGLE_DIRECT_TRAIN), (2000, PINNED_STREAM_2000), (1000, PINNED_STREAM_1000)]
)
def test_pinned_training_set_fingerprint(size, pinned):
    sequences = shared_set(get_machine("SingleDirectMachine"), "train", n=size)
    digest = hashlib.sha256(sequences.commands.tobytes() + sequences.data.tobytes()).hexdigest()
    assert digest == pinned


# --- errors ------------------------------------------------------------------------------------


def test_unknown_machine_names_the_known_ones():
    with pytest.raises(KeyError) as caught:
        get_machine("QuantumMachine")
    for name in DS1_NAMES + DS2_NAMES:
        assert name in str(caught.value)


def test_invalid_command():
    machine = get_machine("SingleDirectMachine")
    with pytest.raises(ValueError, match="command 3"):
        machine.run([NOP_, 3], [0, 0])
    with pytest.raises(ValueError):
        machine.respond(np.array([[NOP_, 3]]), np.array([[0, 0]]))


def test_the_spec_document_states_the_code_s_spec_version_and_logs_it():
    text = (pathlib.Path(__file__).parents[1] / "docs" / "spec.md").read_text()
    assert f"`SPEC_VERSION = {machines.SPEC_VERSION}`" in text
    assert f"**SPEC_VERSION {machines.SPEC_VERSION}" in text.split("## 7. Change log")[1]
