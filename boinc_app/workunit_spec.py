"""The workunit spec: what one workunit trains, as a versioned JSON document.

The work generator writes it, BOINC ships it as the workunit's input file, the trainer reads it,
and the validator reads it again to regenerate the validation set and check a result against it.
JSON (never pickle) because a spec crosses machines and is read by several programs. Readers
refuse a ``format_version`` or ``spec_version`` they do not know.

A spec names the dataset and the task (a DS1/DS2 machine or a DS3 automaton), the data generator
and its seeds, the network architecture, the full training recipe, the convergence rule, the
networks (each with its initialisation and batch-order seed), the epoch budget of this workunit,
the cap on a network's total epochs, and optionally the logical name of a checkpoint to continue.
"""

import hashlib
import json
from dataclasses import dataclass

from boinc_app.atomic_file import write_atomically
from boinc_app.networks import Architecture
from boinc_app.recipe import CLIP_NORM_SUMS, RESTART_KINDS, ConvergenceRule, Recipe

SPEC_FORMAT = "mlds-workunit-spec"
SPEC_FORMAT_VERSION = 1
KNOWN_SPEC_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)  # a spec carries its data sizes and recipe, so old ones still train


class SpecError(ValueError):
    """A workunit spec that cannot be used (unreadable, wrong format, unknown version, bad field)."""


def task_label(task):
    """A spec ``task`` entry's name: the machine name, or ``automaton-NNN``."""
    if task["kind"] == "device":
        return task["machine"]
    return f"automaton-{int(task['index']):03d}"


@dataclass(frozen=True)
class NetworkSeeds:
    key: str
    init_seed: int
    order_seed: int


@dataclass(frozen=True)
class DataConfig:
    generator: str
    train_seed: int
    validation_seed: int
    train_size: int
    validation_size: int
    length: int
    near_miss_probability: float = 0.0


@dataclass(frozen=True)
class WorkunitSpec:
    name: str
    dataset: str
    spec_version: int
    task: dict  # {"kind": "device", "machine": ...} or {"kind": "automaton", "index": ..., ...}
    data: DataConfig
    architecture: Architecture
    recipe: Recipe
    convergence: ConvergenceRule
    networks: tuple
    epoch_budget: int
    max_epochs: int
    resume_from: str = None
    # epochs after which each network's weights are kept (result format 4): trajectories for
    # comparisons at equal training; () keeps none, and such a spec's JSON has no field
    snapshot_epochs: tuple = ()

    @property
    def task_name(self):
        return task_label(self.task)

    def to_dict(self):
        snapshots = {"snapshot_epochs": list(self.snapshot_epochs)} if self.snapshot_epochs else {}
        return {
            **snapshots,
            "format": SPEC_FORMAT,
            "format_version": SPEC_FORMAT_VERSION,
            "spec_version": self.spec_version,
            "name": self.name,
            "dataset": self.dataset,
            "task": dict(self.task),
            "data": dict(self.data.__dict__),
            "architecture": self.architecture.to_dict(),
            "recipe": self.recipe.to_dict(),
            "convergence": self.convergence.to_dict(),
            "networks": [dict(n.__dict__) for n in self.networks],
            "epoch_budget": self.epoch_budget,
            "max_epochs": self.max_epochs,
            "resume_from": self.resume_from,
        }

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def fingerprint(self):
        """SHA-256 of the canonical JSON: ties checkpoints and results to this exact spec."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def spec_from_dict(values):
    """Parse and check a spec document; raises ``SpecError`` naming the problem."""
    if not isinstance(values, dict) or values.get("format") != SPEC_FORMAT:
        raise SpecError(f"not an mlds workunit spec (expected format {SPEC_FORMAT!r})")
    if values.get("format_version") != SPEC_FORMAT_VERSION:
        raise SpecError(
            f"unknown spec format_version {values.get('format_version')!r}; this trainer reads {SPEC_FORMAT_VERSION}"
        )
    if values.get("spec_version") not in KNOWN_SPEC_VERSIONS:
        raise SpecError(f"unknown spec_version {values.get('spec_version')!r}; known: {KNOWN_SPEC_VERSIONS}")
    try:
        spec = WorkunitSpec(
            name=str(values["name"]),
            dataset=str(values["dataset"]),
            spec_version=int(values["spec_version"]),
            task=dict(values["task"]),
            data=DataConfig(**values["data"]),
            architecture=Architecture.from_dict(values["architecture"]),
            recipe=Recipe.from_dict(values["recipe"]),
            convergence=ConvergenceRule.from_dict(values["convergence"]),
            networks=tuple(NetworkSeeds(**n) for n in values["networks"]),
            epoch_budget=int(values["epoch_budget"]),
            max_epochs=int(values["max_epochs"]),
            resume_from=values.get("resume_from"),
            snapshot_epochs=_snapshot_epochs(values.get("snapshot_epochs", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"bad workunit spec: {type(exc).__name__}: {exc}") from None
    _check(spec)
    return spec


MAX_SNAPSHOTS = 64
MAX_SNAPSHOT_EPOCH = 1_000_000  # epochs past max_epochs are allowed (never reached): one tuple per dataset


def _snapshot_epochs(values):
    if not isinstance(values, list) or len(values) > MAX_SNAPSHOTS:
        raise SpecError(f"snapshot_epochs must be a list of at most {MAX_SNAPSHOTS} epochs")
    if any(not isinstance(v, int) or isinstance(v, bool) for v in values):
        raise SpecError(f"snapshot_epochs must hold whole numbers, not {values!r}")
    return tuple(values)


def _check(spec):
    if spec.task.get("kind") not in ("device", "automaton"):
        raise SpecError(f"unknown task kind {spec.task.get('kind')!r}")
    if not spec.networks:
        raise SpecError("the spec lists no networks")
    if len({n.key for n in spec.networks}) != len(spec.networks):
        raise SpecError("network keys are not unique")
    if spec.epoch_budget < 1 or spec.max_epochs < 1:
        raise SpecError("epoch_budget and max_epochs must be at least 1")
    if spec.recipe.batch_size < 1 or spec.data.train_size < 1 or spec.data.validation_size < 1:
        raise SpecError("batch and set sizes must be at least 1")
    _check_restart_fields(spec.recipe)
    epochs = spec.snapshot_epochs
    if any(not 1 <= e <= MAX_SNAPSHOT_EPOCH for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise SpecError(f"snapshot_epochs {list(epochs)} must increase within 1..{MAX_SNAPSHOT_EPOCH}")


def _check_restart_fields(recipe):
    """The restart rule's kinds and the clip-norm sum's precision are known, the rule's counts
    whole numbers >= 0 and its gains shares in [0, 1] (NaN fails)."""
    kinds = recipe.restart_kinds
    if not isinstance(kinds, str) or not set(kinds.split(",")) <= set(RESTART_KINDS):
        raise SpecError(f"unknown restart kinds {kinds!r}; each must be one of {RESTART_KINDS}")
    if recipe.clip_norm_sum not in CLIP_NORM_SUMS:
        raise SpecError(f"unknown clip_norm_sum {recipe.clip_norm_sum!r}; one of {CLIP_NORM_SUMS}")
    for name in ("restart_patience", "restart_after"):
        value = getattr(recipe, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SpecError(f"recipe {name} must be a whole number >= 0, not {value!r}")
    for name in ("restart_min_gain", "restart_min_share"):
        value = getattr(recipe, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise SpecError(f"recipe {name} must be a number from 0 to 1, not {value!r}")


def read_spec(path, max_bytes=1 << 20):
    """Read a spec file (at most ``max_bytes``); raises ``SpecError``."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from None
    if len(raw) > max_bytes:
        raise SpecError(f"spec {path} is larger than {max_bytes} bytes")
    try:
        values = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"spec {path} is not JSON: {exc}") from None
    return spec_from_dict(values)


def write_spec(spec, path):
    write_atomically(path, spec.to_json().encode("utf-8"))
