"""The MLDS datasets declared as data: which tasks, which network, which recipe and rule.

Each dataset is one frozen ``DatasetConfig``; the work generator derives workunit specs from it
and the dataset README cites it. DS1 and DS2 share their machines' training data (spec §3) and
differ only in the machines' trigger behaviour; DS3 has 100 random automata (spec §5).
"""

from dataclasses import dataclass

import machines
from machines.automata import AUTOMATON_SET_SIZES
from machines.sequences import DEVICE_SET_SIZES
from boinc_app.networks import DEVICE_ARCHITECTURE, automaton_architecture
from boinc_app.workunit_spec import task_label
from boinc_app.recipe import AUTOMATON_RECIPE, DEVICE_RECIPE, ConvergenceRule, Recipe

MILESTONES = (100, 500, 1000, 5000, 10000)
# epochs after which a DS1/DS2 network's weights are kept (spec §4a, SPEC_VERSION 7): dense where
# DS1 and DS2 networks both still train (DS1 converges in 2-4 epochs, DS2 in 11-13), then sparse
DEVICE_SNAPSHOT_EPOCHS = (1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
AUTOMATON_SIZES = {"states": 12, "inputs": 4, "outputs": 6}


@dataclass(frozen=True)
class LocalRunDefaults:
    """What ``mlds run --dataset D`` builds when not told: a dataset small enough to finish in
    minutes on two cores, and big enough that its summary shows converged networks."""

    networks: int = 8  # per task
    max_epochs: int = 30
    epoch_budget: int = 10
    tasks: tuple = None  # None: every task of the dataset


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    kind: str  # "device" or "automaton"
    tasks: tuple  # machine names, or automaton indices
    recipe: Recipe
    convergence: ConvergenceRule
    max_epochs: int
    epoch_budget: int
    milestones: tuple = MILESTONES
    length: int = 50
    train_size: int = 1000
    validation_size: int = 1000
    # networks packed into one workunit: enough for the trainer's stacked kernels to pay off on a
    # CPU (bench/train_speed.py), few enough that a workunit's budget stays minutes to an hour
    networks_per_workunit: int = 32
    # every spec of the dataset carries the same tuple (a store holds one), reached or not
    snapshot_epochs: tuple = ()
    local_run: LocalRunDefaults = LocalRunDefaults()

    @property
    def architecture(self):
        if self.kind == "device":
            return DEVICE_ARCHITECTURE
        return automaton_architecture(AUTOMATON_SIZES["inputs"], AUTOMATON_SIZES["outputs"])

    def task_names(self):
        """Every task's name: the machine names, or ``automaton-NNN``."""
        return tuple(task_label(self.task(t)) for t in self.tasks)

    def has_task(self, name):
        try:
            self.task(name)
        except (KeyError, ValueError):
            return False
        return True

    def task(self, name):
        """The spec's ``task`` entry for a machine name or automaton index."""
        if self.kind == "device":
            if name not in self.tasks:
                raise KeyError(f"{self.name} has no machine {name!r}; its machines: {', '.join(self.tasks)}")
            return {"kind": "device", "machine": name}
        index = int(str(name).removeprefix("automaton-"))
        if index not in self.tasks:
            raise KeyError(f"{self.name} has automata 0..{len(self.tasks) - 1}, not {name!r}")
        return {"kind": "automaton", "index": index, **AUTOMATON_SIZES}


DATASETS = {
    "DS1": DatasetConfig(
        "DS1",
        "device",
        machines.DS1_NAMES,
        DEVICE_RECIPE,
        ConvergenceRule(),
        max_epochs=3000,
        epoch_budget=200,
        train_size=DEVICE_SET_SIZES["train"],
        snapshot_epochs=DEVICE_SNAPSHOT_EPOCHS,
    ),
    "DS2": DatasetConfig(
        "DS2",
        "device",
        machines.DS2_NAMES,
        DEVICE_RECIPE,
        ConvergenceRule(require_post_trigger=True),
        max_epochs=3000,
        epoch_budget=200,
        train_size=DEVICE_SET_SIZES["train"],
        snapshot_epochs=DEVICE_SNAPSHOT_EPOCHS,
    ),
    "DS3": DatasetConfig(
        "DS3",
        "automaton",
        tuple(range(100)),
        AUTOMATON_RECIPE,
        # SPEC_VERSION 8: 99.9 % as DS1's (99 % before, unmeasured; docs/difficulty.md)
        ConvergenceRule(accuracy=0.999),
        max_epochs=1000,
        epoch_budget=100,
        train_size=AUTOMATON_SET_SIZES["train"],
        networks_per_workunit=8,
        # two automata, 4 networks each: about 4 minutes on 2 cores, every network converged
        local_run=LocalRunDefaults(networks=4, max_epochs=100, epoch_budget=50, tasks=("automaton-000", "automaton-001")),
    ),
}


def get_dataset(name):
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
