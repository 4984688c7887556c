"""Sequence generation and the shared training data (spec §3).

Every network of a machine trains on one fixed training set and is judged on one fixed validation
set. Both are generated from seeds derived from the machine's *base* name and the set's role, so
``EightBitMachine`` (DS1) and ``EightBitModified`` (DS2) see identical input sequences and their
targets differ only on the three READs after a trigger.

Draw order for ``generate(n, length, seed)`` (all from one ``RawStream(seed)``):
1. ``n*length`` uniforms, row-major: command NOP if u < 0.2, WRITE if u < 0.6, else READ;
2. ``n*length`` raw words: data byte = top 8 bits;
3. ``n`` uniforms: the sequence gets a trigger if u < p_trigger;
4. ``n`` bounded draws: trigger start, uniform on ``0 .. length-3``.
Triggers are drawn for every sequence (used or not), so the stream never depends on earlier draws.
"""

from dataclasses import dataclass

import numpy as np

from machines.devices import NOP, READ, TRIGGER, WRITE, encode_inputs, encode_outputs
from machines.random_stream import GENERATOR_NAME, RawStream, derive_seed

P_NOP, P_WRITE = 0.2, 0.4
P_TRIGGER = 0.5
DEFAULT_SET_SIZE = 1000
# DS1/DS2 networks train on 4,000 shared sequences since SPEC_VERSION 4 (2,000 since version 2:
# 1,000 left the trigger detector short of examples; 2,000 left Parity on its plateau for some
# seeds); validation stays at 1,000.
DEVICE_SET_SIZES = {"train": 4000, "validation": 1000}
DEFAULT_LENGTH = 50
SET_ROLES = ("train", "validation")


@dataclass(frozen=True)
class SequenceSet:
    """Generated sequences and one machine's answers to them (arrays over ``[n, L]``)."""

    machine: str
    seed: int
    commands: np.ndarray  # int8 [n, L]
    data: np.ndarray  # uint8 [n, L]
    inputs: np.ndarray  # float32 [n, L, 11]
    targets: np.ndarray  # float32 [n, L, 8]
    post_trigger: np.ndarray  # bool [n, L]: READs a trigger inverts (would invert, on DS1)

    @property
    def reads(self):
        """Boolean ``[n, L]``: the READ steps, the only ones trained and evaluated."""
        return self.commands == READ


def draw_commands_and_data(n, length, seed, near_miss_probability=0.0):
    """The machine-independent part of spec §3: ``(commands int8 [n, L], data uint8 [n, L])``.

    ``near_miss_probability``: share of sequences that also get a *near-miss* trigger (three
    WRITEs of the trigger bytes with 1-3 bits flipped), planted before the real trigger so a real
    trigger always stays intact. Its draws come after all others, so 0 gives the plain stream.
    """
    if length < len(TRIGGER):
        raise ValueError(f"sequence length {length} is shorter than the trigger ({len(TRIGGER)} steps)")
    stream = RawStream(seed)
    u = stream.uniform(n * length).reshape(n, length)
    commands = np.where(u < P_NOP, NOP, np.where(u < P_NOP + P_WRITE, WRITE, READ)).astype(np.int8)
    data = (stream.words(n * length) >> np.uint64(56)).astype(np.uint8).reshape(n, length)
    has_trigger = stream.uniform(n) < P_TRIGGER
    starts = stream.below(length - len(TRIGGER) + 1, n)
    if near_miss_probability > 0:
        _plant_near_misses(stream, commands, data, near_miss_probability)
    for row in np.flatnonzero(has_trigger):
        for offset, byte in enumerate(TRIGGER):
            commands[row, starts[row] + offset] = WRITE
            data[row, starts[row] + offset] = byte
    return commands, data


def _plant_near_misses(stream, commands, data, probability):
    """Near-miss draws: per sequence a flag, a start, a flip count 1..3 and three bit positions
    0..23 of the 24 trigger bits (repeated positions flip once per occurrence)."""
    n, length = commands.shape
    has_near_miss = stream.uniform(n) < probability
    starts = stream.below(length - len(TRIGGER) + 1, n)
    flip_counts = 1 + stream.below(3, n)
    positions = stream.below(8 * len(TRIGGER), 3 * n).reshape(n, 3)
    for row in np.flatnonzero(has_near_miss):
        pattern = list(TRIGGER)
        for position in positions[row, : flip_counts[row]]:
            pattern[position // 8] ^= 1 << (position % 8)
        for offset, byte in enumerate(pattern):
            commands[row, starts[row] + offset] = WRITE
            data[row, starts[row] + offset] = byte


def generate(machine, n, length, seed, near_miss_probability=0.0):
    """``n`` sequences of ``length`` steps from ``seed``, answered by ``machine``."""
    commands, data = draw_commands_and_data(n, length, seed, near_miss_probability)
    response = machine.respond(commands, data)
    return SequenceSet(
        machine=machine.name,
        seed=int(seed),
        commands=commands,
        data=data,
        inputs=encode_inputs(commands, data),
        targets=encode_outputs(response.outputs),
        post_trigger=response.post_trigger,
    )


def shared_set_seed(base_name, role):
    """Seed of a machine family's shared ``train`` or ``validation`` set."""
    if role not in SET_ROLES:
        raise ValueError(f"unknown set role {role!r}; expected one of {SET_ROLES}")
    return derive_seed("mlds", "DS1/DS2", base_name, role)


def shared_set(machine, role, n=None, length=DEFAULT_LENGTH):
    """The fixed ``train`` or ``validation`` set every network of ``machine`` uses
    (``n`` defaults to the role's size in ``DEVICE_SET_SIZES``)."""
    seed = shared_set_seed(machine.base_name, role)
    return generate(machine, DEVICE_SET_SIZES[role] if n is None else n, length, seed)


__all__ = ["GENERATOR_NAME", "SequenceSet", "generate", "shared_set", "shared_set_seed", "draw_commands_and_data"]
