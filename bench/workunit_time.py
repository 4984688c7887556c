"""The DS3 epoch budget that makes a DS3 workunit last as long as a DS1 workunit.

A volunteer's client sees workunits, not networks: one that runs for hours where the others ran
for one looks stuck, and BOINC's deadlines and credit are sized per workunit. So DS3's
``epoch_budget`` is chosen so that its workunit (8 LSTM networks) takes about the time of a DS1
workunit (32 GRU networks for 200 epochs) on the same machine.

This times full trainer epochs (``boinc_app.training.run_epoch``: training on the spec's whole
training set, then scoring the validation set) of a real DS1 workunit spec and a real DS3 one, in
interleaved rounds on one thread (a VM's speed drifts; each side's median round is used), and
prints seconds per workunit-epoch, the DS1 workunit's time at its budget and the DS3 budget that
matches it. Networks are kept training (the convergence rule is switched off) so that every
epoch costs the same.

    python bench/workunit_time.py                 # 3 rounds of 2 epochs each
    python bench/workunit_time.py --rounds 5 --epochs 3
"""

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boinc_app import training  # noqa: E402
from boinc_app.recipe import ConvergenceRule  # noqa: E402
from boinc_app.task_data import task_data  # noqa: E402
from workgen.datasets import get_dataset  # noqa: E402
from workgen.specs import make_spec  # noqa: E402

TASKS = {"DS1": "SimpleXORMachine", "DS3": "automaton-000"}
NEVER = ConvergenceRule(accuracy=2.0)  # no network stops: every timed epoch is a full one


def workunit(dataset):
    config = get_dataset(dataset)
    spec = make_spec(dataset, TASKS[dataset], networks=config.networks_per_workunit)
    return spec, task_data(spec), training.initial_state(spec).networks


def time_epochs(spec, data, networks, epochs):
    index = np.zeros(len(networks), dtype=np.int64)
    started = time.perf_counter()
    for _ in range(epochs):
        training.run_epoch(spec, data, networks, index, rules=[NEVER] * len(networks))
    return (time.perf_counter() - started) / epochs


@click.command()
@click.option("--rounds", default=3, type=int, help="interleaved rounds; each side's median is used")
@click.option("--epochs", default=2, type=int, help="timed epochs per side and round")
def main(rounds, epochs):
    torch.set_num_threads(1)
    sides = {d: workunit(d) for d in TASKS}
    for spec, data, networks in sides.values():
        time_epochs(spec, data, networks, 1)  # warm-up
    times = {d: [] for d in TASKS}
    for _ in range(rounds):
        for dataset, (spec, data, networks) in sides.items():
            times[dataset].append(time_epochs(spec, data, networks, epochs))
    ds1, ds3 = (statistics.median(times[d]) for d in TASKS)
    ds1_config, ds3_config = get_dataset("DS1"), get_dataset("DS3")
    ds1_workunit = ds1 * ds1_config.epoch_budget
    click.echo(f"torch {torch.__version__}, 1 thread; {rounds} rounds of {epochs} epochs; per round (s): "
               + "; ".join(f"{d} " + ", ".join(f"{t:.2f}" for t in times[d]) for d in TASKS))  # fmt: skip
    click.echo(f"DS1 workunit ({ds1_config.networks_per_workunit} networks): {ds1:.2f} s per epoch, "
               f"{ds1_workunit / 60:.1f} min at its budget of {ds1_config.epoch_budget} epochs")
    click.echo(f"DS3 workunit ({ds3_config.networks_per_workunit} networks): {ds3:.2f} s per epoch, "
               f"{ds3 * ds3_config.epoch_budget / 60:.1f} min at its budget of {ds3_config.epoch_budget} epochs")
    click.echo(f"DS3 budget matching the DS1 workunit: {ds1_workunit / ds3:.0f} epochs")


if __name__ == "__main__":
    main()
