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
from machines.sequences import DEFAULT_LENGTH, SET_ROLES

DS3_COUNT = 100
DEFAULT_STATES, DEFAULT_INPUTS, DEFAULT_OUTPUTS = 12, 4, 6
# DS3 networks train on 4,000 sequences since SPEC_VERSION 8 (1,000 before: networks fitted them
# to a training loss of 2e-4 and stalled at 99.7-99.8 % on the validation set); the first 1,000
# are the old set, since a set is one stream's draws row by row. Validation stays at 1,000.
AUTOMATON_SET_SIZES = {"train": 4000, "validation": 1000}


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

    def shared_set(self, role, n=None, length=DEFAULT_LENGTH):
        """The fixed ``train`` or ``validation`` set every network of this automaton uses
        (``n`` defaults to the role's size in ``AUTOMATON_SET_SIZES``)."""
        if role not in SET_ROLES:
            raise ValueError(f"unknown set role {role!r}; expected one of {SET_ROLES}")
        seed = derive_seed("mlds", "DS3", self.name, role)
        inputs, outputs = self.generate(AUTOMATON_SET_SIZES[role] if n is None else n, length, seed)
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


@dataclass(frozen=True)
class AutomatonStructure:
    """What makes an automaton hard to learn, computed from δ and λ alone.

    ``minimal_states``: states of the minimal Moore machine equivalent to the reachable part (what
    a network must tell apart); ``hidden_states``: of those, how many its output does not name
    (``minimal_states`` minus the outputs in use); ``majority_share``: the most frequent output's
    share of a uniformly random input's steps in the long run, the accuracy of a network that has
    learnt nothing but the majority symbol. ``mean_memory``: over the validation set's steps, the
    mean number of latest inputs that fix the output whatever the state before them (the whole
    prefix, from the start state, where no suffix does); ``whole_prefix_share``: the share of steps
    where only the whole prefix does.
    """

    states: int
    reachable_states: int
    minimal_states: int
    hidden_states: int
    output_symbols: int
    majority_share: float
    mean_memory: float
    whole_prefix_share: float


def structure(machine):
    """The ``AutomatonStructure`` of an ``Automaton``."""
    reachable = _reachable(machine.transitions)
    classes = _moore_classes(machine.transitions, machine.state_outputs, reachable)
    outputs_used = len({int(machine.state_outputs[s]) for s in reachable})
    return AutomatonStructure(
        states=machine.state_count,
        reachable_states=len(reachable),
        minimal_states=len(set(classes.values())),
        hidden_states=len(set(classes.values())) - outputs_used,
        output_symbols=outputs_used,
        majority_share=_majority_share(machine),
        **_memory(machine, machine.shared_set("validation").inputs),
    )


def _reachable(transitions):
    seen, frontier = {0}, [0]
    while frontier:
        for target in transitions[frontier.pop()]:
            if int(target) not in seen:
                seen.add(int(target))
                frontier.append(int(target))
    return sorted(seen)


def _moore_classes(transitions, outputs, states):
    """Partition refinement: states equivalent when no input sequence tells their outputs apart."""
    classes = {s: int(outputs[s]) for s in states}
    while True:
        signatures = {s: (classes[s], *(classes[int(t)] for t in transitions[s])) for s in states}
        numbered = {signature: k for k, signature in enumerate(sorted(set(signatures.values())))}
        refined = {s: numbered[signatures[s]] for s in states}
        if len(set(refined.values())) == len(set(classes.values())):
            return refined
        classes = refined


def _majority_share(machine, steps=2000):
    """The stationary output distribution's largest share, from the state distribution after
    ``steps`` uniformly random inputs (power iteration from state 0, averaged over the last half so
    periodic chains settle)."""
    states, inputs = machine.transitions.shape
    move = np.zeros((states, states))
    for s in range(states):
        for symbol in range(inputs):
            move[s, machine.transitions[s, symbol]] += 1 / inputs
    distribution, average = np.eye(states)[0], np.zeros(states)
    for step in range(steps):
        distribution = distribution @ move
        if step >= steps // 2:
            average += distribution
    average /= steps - steps // 2
    per_output = np.bincount(machine.state_outputs, weights=average, minlength=machine.output_count)
    return float(per_output.max())


def _memory(machine, inputs):
    """Per step t, the shortest suffix ``inputs[s..t]`` after which every state the automaton could
    have been in before ``s`` emits the same output (spec §5's validation set; see ``structure``)."""
    n, length = inputs.shape
    states = machine.state_count
    memory = np.zeros((n, length))
    settled = np.zeros((n, length), dtype=bool)
    for start in range(length - 1, -1, -1):  # longer suffixes later: the first fit is the shortest
        image = np.ones((n, states), dtype=bool)
        for t in range(start, length):
            image = _step_image(machine.transitions, image, inputs[:, t])
            outputs = np.where(image, machine.state_outputs[None, :], -1)
            single = (outputs.max(axis=1) == np.where(image, machine.state_outputs[None, :], states).min(axis=1))
            fits = single & ~settled[:, t]
            memory[fits, t] = t - start + 1
            settled[:, t] |= single
    whole = ~settled
    memory[whole] = np.broadcast_to(np.arange(1, length + 1), (n, length))[whole]
    return {"mean_memory": float(memory.mean()), "whole_prefix_share": float(whole.mean())}


def _step_image(transitions, image, symbols):
    """The set of states reachable in one step from each row's set ``image`` [n, S] on its symbol."""
    n, states = image.shape
    targets = transitions[:, symbols].T  # [n, S]: δ(state, symbol of row)
    moved = np.zeros_like(image)
    rows = np.repeat(np.arange(n), states)
    moved[rows[image.ravel()], targets[image]] = True
    return moved
