"""Which workunits a dataset needs: first workunits for a target, and continuations.

A workunit trains ``networks_per_workunit`` networks of one task for at most its epoch budget. A
network that has neither converged nor reached the dataset's maximum epochs comes back with its
checkpoint in the result file, and the follow-up workunit (continuation step + 1) resumes from that
file, so no workunit runs much longer than its budget however hard the machine. The follow-up
carries the same networks; finished ones stay as they are (the trainer does not train them again).

Everything here is a pure function of the dataset declaration, so planning twice yields the same
names, and the queue that stores workunits by name never holds a duplicate.
"""

import dataclasses
from dataclasses import dataclass

from boinc_app.training import TRAINING
from workgen.datasets import get_dataset
from workgen.specs import make_spec, parse_workunit_name

RESUME_NAME = "checkpoint.h5"  # logical name of the previous result in a follow-up workunit


@dataclass(frozen=True)
class WorkPlan:
    """What to build: ``count`` networks of each task of ``dataset``."""

    dataset: str
    count: int
    networks_per_workunit: int = None  # default: the dataset's
    seed: int = 1
    max_epochs: int = None  # default: the dataset's
    epoch_budget: int = None  # default: the dataset's
    tasks: tuple = None  # default: all the dataset's tasks

    def workunit_size(self):
        return self.networks_per_workunit or get_dataset(self.dataset).networks_per_workunit

    def task_names(self):
        if self.tasks is None:
            return get_dataset(self.dataset).task_names()
        return tuple(self.tasks)


def first_workunits(plan):
    """The continuation-0 specs covering networks ``0 .. count-1`` of every task."""
    specs = []
    for task in plan.task_names():
        size = plan.workunit_size()
        for first in range(0, plan.count, size):
            networks = min(size, plan.count - first)
            specs.append(
                make_spec(
                    plan.dataset,
                    task,
                    networks=networks,
                    first_index=first,
                    seed=plan.seed,
                    max_epochs=plan.max_epochs,
                    epoch_budget=plan.epoch_budget,
                )
            )
    return specs


def follow_up(spec, state):
    """The next workunit for the networks of ``spec`` still training, or None when all are finished."""
    if all(network.status != TRAINING for network in state.networks):
        return None
    name = str(parse_workunit_name(spec.name).next_continuation())
    return dataclasses.replace(spec, name=name, resume_from=RESUME_NAME)


def continuation_step(name):
    """``DS1-ParityMachine-n000004-k4-c2`` (or ``...-c2-r1``) -> 2."""
    return parse_workunit_name(name).continuation
