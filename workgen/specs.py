"""Workunit specs and names, derived from a dataset declaration.

A workunit is named ``<dataset>-<task>-n<first network index>-k<networks>-c<continuation step>``,
plus ``-r<N>`` for the N-th re-issue of a workunit BOINC gave up on (BOINC's names are unique in its
database, so a re-issue needs a name of its own): deterministic, unique per network range,
continuation and re-issue, so creating work twice never duplicates it. Names hold no ``_``: BOINC
names a result ``<workunit>_<n>`` and its upload ``<result>_r<random>_<i>``, so the workunit is
everything before the first ``_`` of an upload's file name. Network ``i`` of a task uses seed ``base_seed + i`` for both its initialisation and its batch
order, so any network can be re-trained alone from its index.
"""

import dataclasses
import re
from dataclasses import dataclass

import machines
from boinc_app.workunit_spec import DataConfig, NetworkSeeds, WorkunitSpec, task_label
from machines.random_stream import GENERATOR_NAME, derive_seed
from machines.sequences import shared_set_seed
from workgen.datasets import get_dataset


_NAME = re.compile(r"^(DS[0-9]+)-([A-Za-z0-9-]+?)-n([0-9]{6,})-k([1-9][0-9]*)-c([0-9]+)(?:-r([1-9][0-9]*))?$")


def workunit_name(dataset, task_name, first_index, count, continuation=0, reissue=0):
    name = f"{dataset}-{task_name}-n{first_index:06d}-k{count}-c{continuation}"
    return f"{name}-r{reissue}" if reissue else name


@dataclass(frozen=True)
class WorkunitName:
    """The parts of a workunit name (``parse_workunit_name``)."""

    dataset: str
    task: str
    first_index: int
    count: int
    continuation: int
    reissue: int

    def __str__(self):
        return workunit_name(self.dataset, self.task, self.first_index, self.count, self.continuation, self.reissue)

    @property
    def base(self):
        """The name without its re-issue suffix: what every re-issue of one workunit shares."""
        return workunit_name(self.dataset, self.task, self.first_index, self.count, self.continuation)

    def reissued(self):
        return dataclasses.replace(self, reissue=self.reissue + 1)

    def next_continuation(self):
        return dataclasses.replace(self, continuation=self.continuation + 1, reissue=0)


def parse_workunit_name(name):
    """A ``WorkunitName``; ``ValueError`` for a name the work generator never makes."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not an mlds workunit name (<dataset>-<task>-nNNNNNN-kK-cC[-rR])")
    dataset, task, first, count, continuation, reissue = match.groups()
    return WorkunitName(dataset, task, int(first), int(count), int(continuation), int(reissue or 0))


def data_config(config, task):
    """The shared training/validation sets of a task (spec §3, §5)."""
    if task["kind"] == "device":
        base = machines.get_machine(task["machine"]).base_name
        train_seed, validation_seed = shared_set_seed(base, "train"), shared_set_seed(base, "validation")
    else:
        name = task_label(task)
        train_seed = derive_seed("mlds", "DS3", name, "train")
        validation_seed = derive_seed("mlds", "DS3", name, "validation")
    return DataConfig(
        generator=GENERATOR_NAME,
        train_seed=train_seed,
        validation_seed=validation_seed,
        train_size=config.train_size,
        validation_size=config.validation_size,
        length=config.length,
    )


def make_spec(
    dataset,
    task_name,
    networks=1,
    first_index=0,
    seed=1,
    max_epochs=None,
    epoch_budget=None,
    recipe=None,
    continuation=0,
    resume_from=None,
):
    """The spec of one workunit: ``networks`` networks of one task, indices from ``first_index``."""
    config = get_dataset(dataset)
    task = config.task(task_name)
    max_epochs = max_epochs or config.max_epochs
    epoch_budget = epoch_budget or min(config.epoch_budget, max_epochs)
    label = task_label(task)
    seeds = tuple(network_seeds(dataset, label, seed, first_index + i) for i in range(networks))
    return WorkunitSpec(
        name=workunit_name(dataset, task_label(task), first_index, networks, continuation),
        dataset=dataset,
        spec_version=machines.SPEC_VERSION,
        task=task,
        data=data_config(config, task),
        architecture=config.architecture,
        recipe=recipe or config.recipe,
        convergence=config.convergence,
        networks=seeds,
        epoch_budget=epoch_budget,
        max_epochs=max_epochs,
        resume_from=resume_from,
        snapshot_epochs=config.snapshot_epochs,
    )


def network_seeds(dataset, task, base, index):
    """Network ``index`` of a task: independent initialisation and batch-order seeds (spec §4a).

    Hashed from dataset, task, seed base and index (63 bits: they are stored as int64), so no two
    networks of any two tasks or datasets share a seed. Until SPEC_VERSION 7 both were
    ``base + index`` in every task: network i of DS1 and of DS2 and of every machine began from
    the same weights, a pairing no study had asked for (the analysis issue found each DS2
    network's nearest DS1 neighbour in weight space to be its twin).
    """
    init_seed, order_seed = (derive_seed("mlds", "network", dataset, task, base, index, role) >> 1 for role in ("init", "order"))
    return NetworkSeeds(key=f"net-{index:06d}", init_seed=init_seed, order_seed=order_seed)


def with_data(spec, **changes):
    """The same spec with some data fields changed (benchmarks, experiments)."""
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, **changes))


def with_architecture(spec, **changes):
    """The same spec with some architecture fields changed (benchmarks, experiments)."""
    return dataclasses.replace(spec, architecture=dataclasses.replace(spec.architecture, **changes))


def with_recipe(spec, **changes):
    """The same spec with some recipe fields changed (benchmarks, experiments)."""
    return dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, **changes))
