"""DS3: the 100 random automata of spec §5, regenerated identically everywhere.

An automaton is a Moore machine with ``S`` states, ``A`` input symbols and ``B`` output symbols:
``δ: S×A → S`` (``transitions``), ``λ: S → B`` (``state_outputs``), start state 0. On each input
it moves to ``δ(state, input)`` and emits ``λ`` of the new state.

Every volunteer and the validator rebuild automaton ``k`` from its index alone, so the
construction is pinned down to the draw: the seed is
``derive_seed("mlds", "DS3", "automaton", k)``, and all randomness comes from one
``RawStream(seed)`` (raw PCG64 words turned into draws with our own arithmetic, never NumPy's
distributions or Python's ``random``). The draws are taken in this order:

1. ``cycle = permutation(S)``: the states in the order of the Hamiltonian cycle
   ``cycle[0] → cycle[1] → … → cycle[S-1] → cycle[0]``.
2. ``below(A, S)``: for the state at cycle position ``k``, the one input symbol that leads on to
   the state at position ``k+1`` (wrapping round).
3. ``below(S, S*A)``, row-major over (state, input): the target of every transition, uniform over
   all states, self-loops included. It is drawn for every cell, cycle edges too, and a cycle edge
   then overwrites its cell, so the stream never depends on the cycle. This makes δ total.
4. ``output_order = permutation(S)``: state ``output_order[j]`` emits output ``j`` for
   ``j < B``, so every output is used (λ is onto).
5. ``below(B, S-B)``: the outputs of the remaining states ``output_order[B:]``, in that order.

Because ``B < S``, several states share an output: the hidden state a network must infer from the
history. Training sequences (``generate``) draw inputs uniformly over the ``A`` symbols, row-major,
with ``below(A, n*L)`` from their own ``RawStream``.
"""

import operator
from dataclasses import dataclass

import numpy as np

from machines.random_stream import RawStream, derive_seed
from machines.sequences import DEFAULT_LENGTH, DEFAULT_SET_SIZE, SET_ROLES

DS3_COUNT = 100
DEFAULT_STATES, DEFAULT_INPUTS, DEFAULT_OUTPUTS = 12, 4, 6


@dataclass(frozen=True, eq=False)
class Automaton:
    """One DS3 automaton (a Moore machine). Use ``machines.automaton(index)`` to get one.

    Arrays are read-only. ``cycle`` lists the states in Hamiltonian-cycle order.
    """

    index: int
    name: str
    seed: int
    transitions: np.ndarray  # int64 [S, A]: δ
    state_outputs: np.ndarray  # int64 [S]: λ
    cycle: np.ndarray  # int64 [S]: a permutation of the states
    output_count: int  # B

    @property
    def state_count(self):
        return self.transitions.shape[0]

    @property
    def input_count(self):
        return self.transitions.shape[1]

    def run(self, inputs):
        """λ(state after each input) for one sequence, from state 0 (reference, plain Python)."""
        state, outputs = 0, []
        for t, symbol in enumerate(inputs):
            symbol = int(symbol)
            if not 0 <= symbol < self.input_count:
                raise ValueError(f"input {symbol} at step {t} is not in 0..{self.input_count - 1}")
            state = int(self.transitions[state, symbol])
            outputs.append(int(self.state_outputs[state]))
        return outputs

    def respond(self, inputs):
        """Vectorised ``run`` over an ``[n, L]`` array of input symbols: outputs int64 ``[n, L]``."""
        inputs = np.asarray(inputs, dtype=np.int64)
        if inputs.size and (inputs.min() < 0 or inputs.max() >= self.input_count):
            raise ValueError(f"input symbols must be in 0..{self.input_count - 1}")
        n, length = inputs.shape
        state = np.zeros(n, dtype=np.int64)
        outputs = np.zeros((n, length), dtype=np.int64)
        for t in range(length):
            state = self.transitions[state, inputs[:, t]]
            outputs[:, t] = self.state_outputs[state]
        return outputs

    def generate(self, n, length, seed):
        """``(inputs, outputs)``, both int64 ``[n, length]``; inputs uniform over the A symbols."""
        inputs = RawStream(seed).below(self.input_count, n * length).reshape(n, length)
        return inputs, self.respond(inputs)

    def shared_set(self, role, n=DEFAULT_SET_SIZE, length=DEFAULT_LENGTH):
        """The fixed ``train`` or ``validation`` set every network of this automaton uses."""
        if role not in SET_ROLES:
            raise ValueError(f"unknown set role {role!r}; expected one of {SET_ROLES}")
        seed = derive_seed("mlds", "DS3", self.name, role)
        inputs, outputs = self.generate(n, length, seed)
        return AutomatonSet(automaton=self.name, seed=seed, inputs=inputs, outputs=outputs)

    def encode_inputs(self, inputs):
        """One-hot input symbols: float32 ``[..., A]`` (the DS3 network's input)."""
        return one_hot(inputs, self.input_count)


@dataclass(frozen=True, eq=False)
class AutomatonSet:
    """Input sequences and an automaton's answers: int64 ``[n, L]`` symbols each."""

    automaton: str
    seed: int
    inputs: np.ndarray
    outputs: np.ndarray


def one_hot(symbols, width):
    """float32 ``[..., width]`` with a 1 at each symbol."""
    symbols = np.asarray(symbols, dtype=np.int64)
    return (symbols[..., None] == np.arange(width)).astype(np.float32)


def automaton(index, states=DEFAULT_STATES, inputs=DEFAULT_INPUTS, outputs=DEFAULT_OUTPUTS):
    """DS3's automaton number ``index`` (0..99), built as the module docstring describes."""
    index = _checked_index(index)
    _check_sizes(states, inputs, outputs)
    seed = derive_seed("mlds", "DS3", "automaton", index)
    stream = RawStream(seed)
    cycle = stream.permutation(states)
    transitions = _transitions(stream, cycle, inputs)
    state_outputs = _state_outputs(stream, states, outputs)
    for array in (transitions, state_outputs, cycle):
        array.setflags(write=False)
    return Automaton(
        index=index,
        name=f"automaton-{index:03d}",
        seed=seed,
        transitions=transitions,
        state_outputs=state_outputs,
        cycle=cycle,
        output_count=outputs,
    )


def _transitions(stream, cycle, inputs):
    """Draws 2 and 3: the cycle's input symbols, then every target; cycle edges win."""
    states = len(cycle)
    cycle_inputs = stream.below(inputs, states)
    transitions = stream.below(states, states * inputs).reshape(states, inputs)
    for position, state in enumerate(cycle):
        transitions[state, cycle_inputs[position]] = cycle[(position + 1) % states]
    return transitions


def _state_outputs(stream, states, outputs):
    """Draws 4 and 5: one state per output first (onto), then random outputs for the rest."""
    order = stream.permutation(states)
    state_outputs = np.empty(states, dtype=np.int64)
    state_outputs[order[:outputs]] = np.arange(outputs)
    state_outputs[order[outputs:]] = stream.below(outputs, states - outputs)
    return state_outputs


def _checked_index(index):
    try:
        index = operator.index(index)
    except TypeError:
        raise ValueError(f"automaton index must be an integer in 0..{DS3_COUNT - 1}, got {index!r}") from None
    if not 0 <= index < DS3_COUNT:
        raise ValueError(f"automaton index must be in 0..{DS3_COUNT - 1}, got {index}")
    return index


def _check_sizes(states, inputs, outputs):
    for label, value in (("states", states), ("inputs", inputs), ("outputs", outputs)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if outputs >= states:
        raise ValueError(f"outputs ({outputs}) must be fewer than states ({states}) to have hidden states")
