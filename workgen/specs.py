"""Workunit specs and names, derived from a dataset declaration.

A workunit is named ``<dataset>-<task>-n<first network index>-k<networks>-c<continuation step>``:
deterministic, unique per network range and continuation, so creating work twice never duplicates
it. Network ``i`` of a task uses seed ``base_seed + i`` for both its initialisation and its batch
order, so any network can be re-trained alone from its index.
"""

import dataclasses

import machines
from boinc_app.workunit_spec import DataConfig, NetworkSeeds, WorkunitSpec, task_label
from machines.random_stream import GENERATOR_NAME, derive_seed
from machines.sequences import shared_set_seed
from workgen.datasets import get_dataset


def workunit_name(dataset, task_name, first_index, count, continuation=0):
    return f"{dataset}-{task_name}-n{first_index:06d}-k{count}-c{continuation}"


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
    seeds = tuple(
        NetworkSeeds(key=f"net-{first_index + i:06d}", init_seed=seed + first_index + i, order_seed=seed + first_index + i)
        for i in range(networks)
    )
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
    )


def with_data(spec, **changes):
    """The same spec with some data fields changed (benchmarks, experiments)."""
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, **changes))


def with_architecture(spec, **changes):
    """The same spec with some architecture fields changed (benchmarks, experiments)."""
    return dataclasses.replace(spec, architecture=dataclasses.replace(spec.architecture, **changes))


def with_recipe(spec, **changes):
    """The same spec with some recipe fields changed (benchmarks, experiments)."""
    return dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, **changes))
