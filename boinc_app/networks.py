"""The reference network modules (spec §4), defined with ``torch.nn`` layers.

These modules fix the *shape* and the ``state_dict`` names of every network we publish: result
files and the dataset store name their tensors by these keys, and the validator rebuilds one of
these modules to re-evaluate a returned network. The trainer itself trains many networks at once
with stacked parameters (``boinc_app.ensemble``) and converts to and from these layouts.
"""

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

DEVICE_NET_PARAMETERS = 4364


@dataclass(frozen=True)
class Architecture:
    """What a network is: recurrent cell, sizes, head widths and activation."""

    cell: str  # "gru" or "lstm"
    input_size: int
    hidden_size: int
    num_layers: int
    head: tuple  # widths of the linear layers after the recurrent stack
    activation: str  # between linear layers: "tanh" or "relu"

    def to_dict(self):
        return {**self.__dict__, "head": list(self.head)}

    @classmethod
    def from_dict(cls, values):
        return cls(**{**values, "head": tuple(int(w) for w in values["head"])})


DEVICE_ARCHITECTURE = Architecture("gru", 11, 12, 4, (24, 8, 8, 8), "tanh")


def automaton_architecture(inputs, outputs):
    """DS3: LSTM(A, 64, 4 layers) -> Linear(64, 64) -> ReLU -> Linear(64, B)."""
    return Architecture("lstm", inputs, 64, 4, (64, outputs), "relu")


ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu_0.1": lambda x: torch.nn.functional.leaky_relu(x, 0.1),
    "identity": lambda x: x,
}


class RecurrentNet(nn.Module):
    """Recurrent stack then linear head, one output vector (logits) per step."""

    def __init__(self, arch):
        super().__init__()
        if arch.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {arch.activation!r}; known: {sorted(ACTIVATIONS)}")
        recurrent = {"gru": nn.GRU, "lstm": nn.LSTM}[arch.cell]
        self.arch = arch
        self.rnn = recurrent(arch.input_size, arch.hidden_size, arch.num_layers, batch_first=True)
        widths = (arch.hidden_size,) + tuple(arch.head)
        self.head = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, inputs):
        hidden, _ = self.rnn(inputs)
        act = ACTIVATIONS[self.arch.activation]
        for i, layer in enumerate(self.head):
            hidden = layer(hidden)
            if i < len(self.head) - 1:
                hidden = act(hidden)
        return hidden


def is_head_parameter(key):
    """Whether a ``state_dict`` key names a weight of the linear head (not the recurrent stack)."""
    return key.startswith("head.")


def build_network(arch, init_seed=None):
    """A fresh module; with ``init_seed``, PyTorch's default initialisation drawn from that seed."""
    if init_seed is None:
        return RecurrentNet(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        return RecurrentNet(arch)


def module_with_weights(arch, weights):
    """A module of ``arch`` holding ``weights`` (``{state_dict key: array}``, e.g. a network state)."""
    module = build_network(arch)
    module.load_state_dict({key: torch.as_tensor(value) for key, value in weights.items()})
    return module


def parameter_count(module):
    return sum(p.numel() for p in module.parameters())


def expected_shapes(arch):
    """``{state_dict key: shape}`` for a network of ``arch``, without drawing any numbers."""
    return dict(_expected_shapes(arch))


def parameter_layout(arch):
    """``[(state_dict key, shape), ...]`` in the reference module's order: the order in which
    result files and dataset stores concatenate a network's tensors into one flat vector."""
    return list(_expected_shapes(arch))


def flatten_tensors(tensors, layout):
    """A state dict (or Adam moments) -> one float32 vector in ``layout`` order."""
    return np.concatenate([np.asarray(tensors[key], dtype=np.float32).reshape(-1) for key, _ in layout])


def unflatten_tensors(flat, layout):
    """One flat vector -> ``{state_dict key: float32 array}`` (views of ``flat`` where it is float32)."""
    tensors, offset = {}, 0
    for key, shape in layout:
        size = int(np.prod(shape))
        tensors[key] = np.asarray(flat[offset : offset + size], dtype=np.float32).reshape(shape)
        offset += size
    return tensors


@functools.lru_cache(maxsize=64)
def _expected_shapes(arch):
    # building even a meta module costs ~7 ms; a validator asks once per network of a result
    with torch.device("meta"):
        module = RecurrentNet(arch)
    return tuple((key, tuple(value.shape)) for key, value in module.state_dict().items())
