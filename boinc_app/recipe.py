"""The training recipe and convergence rule (spec §4a), as data carried in every workunit spec.

A recipe change is a spec change: the defaults here are those of the current ``SPEC_VERSION``,
and ``docs/spec.md`` records what changed and why. The workunit spec carries the full recipe,
so an old workunit keeps training the way it was created.
"""

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Recipe:
    """How one network is trained. Every field is recorded in specs and result files."""

    learning_rate: float = 3e-3
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    batch_size: int = 32
    clip_norm: float = 1.0
    # loss weight of the READ steps a trigger inverts (would invert, on DS1: the same weights for
    # DS1 and DS2, so their networks differ only in labels); 1.0 = plain average
    post_trigger_weight: float = 1.0
    # learning rate multiplier once validation accuracy has reached ``anneal_accuracy``
    anneal_factor: float = 1.0
    anneal_accuracy: float = 1.0
    # added to the GRU update-gate (LSTM forget-gate) biases at initialisation; 0 = PyTorch default
    gate_bias: float = 0.0
    # > 0: each recurrent gate block (GRU r, z, n; LSTM i, f, g, o) of weight_hh starts as a random
    # orthogonal matrix times this gain, drawn from the network's init seed; 0 = PyTorch default
    recurrent_orthogonal_gain: float = 0.0
    # train on sequence prefixes growing from ``curriculum_start_length`` to full length over the
    # first ``curriculum_epochs`` epochs (0 = off); validation always uses full sequences
    curriculum_epochs: int = 0
    curriculum_start_length: int = 10
    # > 0: a network whose best validation accuracy since its last (re)initialisation rose by less
    # than ``restart_min_gain`` over the last ``restart_patience`` epochs is re-initialised from a
    # seed derived from its init seed (``training.restart_seed``); 0 = never
    restart_patience: int = 0
    restart_min_gain: float = 0.001
    # the gain asked for is at least this share of the error left before those epochs (1 - best):
    # lets a network creep near the top, where an absolute gain is out of reach; 0 = absolute only
    restart_min_share: float = 0.0
    # > 0: a network still training ``restart_after`` epochs after its last (re)initialisation is
    # re-initialised the same way, stalled or not (an attempt's budget); 0 = never
    restart_after: int = 0
    # what the n-th restart re-initialises, cycling through this comma-separated list: "full" (every
    # weight, Adam state zeroed) or "head" (the linear head only, its Adam moments zeroed; the
    # recurrent stack and its optimiser state go on)
    restart_kinds: str = "full"
    # the precision the gradient clip's squared norm is summed in: "float64" makes a network's
    # training bitwise independent of its ensemble and thread count (what the validator's
    # re-execution needs); "float32" is how specs before SPEC_VERSION 7 trained
    clip_norm_sum: str = "float32"

    def to_dict(self):
        """All fields, except those added after SPEC_VERSION 4 while at their defaults: so a spec
        written before they existed keeps its canonical JSON, and its fingerprint."""
        values = asdict(self)
        values["betas"] = list(self.betas)
        for name, default in LATER_FIELD_DEFAULTS.items():
            if values[name] == default:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown recipe fields: {', '.join(sorted(unknown))}")
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(float(b) for b in values["betas"])
        return cls(**values)


# fields added after SPEC_VERSION 4, left out of the canonical JSON at these defaults (which must
# therefore never change: a spec without the field means this value)
LATER_FIELD_DEFAULTS = {
    "restart_patience": 0, "restart_min_gain": 0.001, "restart_min_share": 0.0, "restart_after": 0, "restart_kinds": "full",
    "clip_norm_sum": "float32",
}  # fmt: skip
RESTART_KINDS = ("full", "head")
CLIP_NORM_SUMS = ("float32", "float64")


@dataclass(frozen=True)
class ConvergenceRule:
    """Converged when validation accuracy >= ``accuracy`` and (DS2) post-trigger >= ``post_trigger``."""

    accuracy: float = 0.999
    post_trigger_accuracy: float = 0.99
    require_post_trigger: bool = False

    def met(self, accuracy, post_trigger_accuracy):
        if accuracy < self.accuracy:
            return False
        return not self.require_post_trigger or post_trigger_accuracy >= self.post_trigger_accuracy

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**values)


# SPEC_VERSION 3: orthogonal recurrent blocks; 5: the restart rule; 6: a restart renews the head
# only, after 30 epochs that won a tenth of the error left; 7: the clip norm summed in float64;
# 8 (DS3): Adam 3e-3 (1e-3 needed 52-115 epochs to 99 % on 1,000 sequences, 3e-3 22-34)
DEVICE_RECIPE = Recipe(
    recurrent_orthogonal_gain=1.0,
    restart_patience=30,
    restart_min_gain=0.0001,
    restart_min_share=0.1,
    restart_kinds="head",
    clip_norm_sum="float64",
)
AUTOMATON_RECIPE = Recipe(learning_rate=3e-3, clip_norm_sum="float64")
