"""The data-generating machines of MLDS: DS1 devices, DS2 triggered variants, DS3 automata.

This package knows nothing about BOINC, files or training; it turns seeds into sequences and
answers. ``docs/spec.md`` is its normative description; ``SPEC_VERSION`` changes with it.
"""

from machines.automata import DS3_COUNT, Automaton, automaton
from machines.devices import (
    DS1_NAMES,
    DS2_NAMES,
    INPUT_WIDTH,
    MACHINE_NAMES,
    NOP,
    OUTPUT_WIDTH,
    READ,
    WRITE,
    Device,
    get_machine,
)
from machines.sequences import GENERATOR_NAME, SequenceSet, generate, shared_set

SPEC_VERSION = 8

__all__ = [
    "DS1_NAMES",
    "DS2_NAMES",
    "DS3_COUNT",
    "GENERATOR_NAME",
    "INPUT_WIDTH",
    "MACHINE_NAMES",
    "NOP",
    "OUTPUT_WIDTH",
    "READ",
    "SPEC_VERSION",
    "WRITE",
    "Automaton",
    "Device",
    "SequenceSet",
    "automaton",
    "generate",
    "get_machine",
    "shared_set",
]
