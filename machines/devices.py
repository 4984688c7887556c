"""The DS1 devices and their DS2 (triggered) variants, exactly as ``docs/spec.md`` §1-§2 define them.

A device sees one command per step (NOP, WRITE or READ) and a data byte, and drives a byte on the
bus on READ steps only. DS2's ``…Modified`` machines add a trigger: three consecutive steps
``WRITE 0xA5, WRITE 0x5A, WRITE 0xA5`` invert (within the mask) the outputs of the next three READ
steps; a trigger completing while inversions are pending resets the count to three.

Two implementations of the same rule live here on purpose: ``Device.run`` walks one sequence in
plain Python (the readable reference the property tests check against the spec), and
``Device.respond`` steps many sequences at once with NumPy (what the data generator uses).
Tests assert that the two agree.
"""

from dataclasses import dataclass

import numpy as np

NOP, WRITE, READ = 0, 1, 2
TRIGGER = (0xA5, 0x5A, 0xA5)
INVERTED_READS = 3
INPUT_WIDTH = 11
OUTPUT_WIDTH = 8

BASE_NAMES = ("SingleDirect", "SingleInvert", "SimpleXOR", "Parity", "EightBit")
DS1_NAMES = tuple(f"{base}Machine" for base in BASE_NAMES)
DS2_NAMES = tuple(f"{base}Modified" for base in BASE_NAMES)
MACHINE_NAMES = DS1_NAMES + DS2_NAMES


def _store_bit(state, data):
    return data & 1


def _toggle_bit(state, data):
    return state ^ (data & 1)


def _store_byte(state, data):
    return data


def _read_state(state, data):
    return state


def _read_inverted(state, data):
    return 1 - state


def _read_xor(state, data):
    return state ^ (data & 1)


# base name -> (mask, on_write(state, d) -> state, on_read(state, d) -> byte); these work
# element-wise on Python ints and on NumPy integer arrays alike.
_BEHAVIOUR = {
    "SingleDirect": (0x01, _store_bit, _read_state),
    "SingleInvert": (0x01, _store_bit, _read_inverted),
    "SimpleXOR": (0x01, _store_bit, _read_xor),
    "Parity": (0x01, _toggle_bit, _read_state),
    "EightBit": (0xFF, _store_byte, _read_state),
}


@dataclass(frozen=True)
class StepResponse:
    """What a device does over a batch of sequences (all arrays ``[n, L]``).

    ``outputs``: the bus byte per step; ``post_trigger``: True on the READ steps whose output a
    trigger inverts (on DS1 machines: the READs that *would* be inverted, so DS1 and DS2 can be
    compared on the same steps).
    """

    outputs: np.ndarray
    post_trigger: np.ndarray


@dataclass(frozen=True)
class Device:
    """One DS1 or DS2 machine. Use ``machines.get_machine(name)`` to get one."""

    name: str
    base_name: str
    modified: bool
    mask: int

    def run(self, commands, data):
        """Bus byte per step for one sequence (reference implementation, plain Python)."""
        _, on_write, on_read = _BEHAVIOUR[self.base_name]
        state, pending, outputs = 0, 0, []
        for t, (command, byte) in enumerate(zip(commands, data)):
            command, byte = int(command), int(byte)
            output = 0
            if command == WRITE:
                state = on_write(state, byte)
                if _trigger_completes(commands, data, t):
                    pending = INVERTED_READS
            elif command == READ:
                output = on_read(state, byte) & self.mask
                if pending:
                    pending -= 1
                    if self.modified:
                        output ^= self.mask
            elif command != NOP:
                raise ValueError(f"command {command} at step {t} is not NOP (0), WRITE (1) or READ (2)")
            outputs.append(output)
        return outputs

    def respond(self, commands, data):
        """Vectorised ``run`` over ``[n, L]`` arrays of commands and data bytes."""
        commands = np.asarray(commands, dtype=np.int64)
        data = np.asarray(data, dtype=np.int64)
        if not np.isin(commands, (NOP, WRITE, READ)).all():
            raise ValueError("commands must be NOP (0), WRITE (1) or READ (2)")
        _, on_write, on_read = _BEHAVIOUR[self.base_name]
        n, length = commands.shape
        state = np.zeros(n, dtype=np.int64)
        pending = np.zeros(n, dtype=np.int64)
        outputs = np.zeros((n, length), dtype=np.int64)
        post_trigger = np.zeros((n, length), dtype=bool)
        completes = trigger_completions(commands, data)
        for t in range(length):
            writing = commands[:, t] == WRITE
            reading = commands[:, t] == READ
            state = np.where(writing, on_write(state, data[:, t]), state)
            pending = np.where(completes[:, t], INVERTED_READS, pending)
            inverted = reading & (pending > 0)
            value = on_read(state, data[:, t]) & self.mask
            if self.modified:
                value = np.where(inverted, value ^ self.mask, value)
            outputs[:, t] = np.where(reading, value, 0)
            post_trigger[:, t] = inverted
            pending = np.where(inverted, pending - 1, pending)
        return StepResponse(outputs=outputs, post_trigger=post_trigger)

    def encode(self, commands, data):
        """``(inputs [L, 11], targets [L, 8])`` float32 for one sequence (spec §1 encodings)."""
        inputs = encode_inputs(np.asarray(commands)[None], np.asarray(data)[None])[0]
        targets = encode_outputs(np.asarray(self.run(commands, data))[None])[0]
        return inputs, targets


def _trigger_completes(commands, data, t):
    if t < len(TRIGGER) - 1:
        return False
    window = range(t - len(TRIGGER) + 1, t + 1)
    return all(int(commands[i]) == WRITE and int(data[i]) == byte for i, byte in zip(window, TRIGGER))


def trigger_completions(commands, data):
    """Boolean ``[n, L]``: True at the step where a trigger's third write happens."""
    hit = np.ones(commands.shape, dtype=bool)
    hit[:, : len(TRIGGER) - 1] = False
    length = commands.shape[1]
    for offset, byte in enumerate(TRIGGER):
        lag = len(TRIGGER) - 1 - offset
        matches = (commands == WRITE) & (data == byte)
        hit[:, lag:] &= matches[:, : length - lag]
    return hit


def encode_inputs(commands, data):
    """One-hot command then data bits LSB first: ``[n, L, 11]`` float32."""
    commands = np.asarray(commands, dtype=np.int64)
    data = np.asarray(data, dtype=np.int64)
    inputs = np.zeros(commands.shape + (INPUT_WIDTH,), dtype=np.float32)
    for command in (NOP, WRITE, READ):
        inputs[..., command] = commands == command
    inputs[..., 3:] = _bits(data)
    return inputs


def encode_outputs(outputs):
    """Bus bytes as bits LSB first: ``[n, L, 8]`` float32."""
    return _bits(np.asarray(outputs, dtype=np.int64))


def _bits(values):
    shifts = np.arange(8, dtype=np.int64)
    return ((values[..., None] >> shifts) & 1).astype(np.float32)


def get_machine(name):
    """The machine called ``name`` (one of ``MACHINE_NAMES``)."""
    for base in BASE_NAMES:
        if name in (f"{base}Machine", f"{base}Modified"):
            mask = _BEHAVIOUR[base][0]
            return Device(name=name, base_name=base, modified=name.endswith("Modified"), mask=mask)
    raise KeyError(f"unknown machine {name!r}; known machines: {', '.join(MACHINE_NAMES)}")
