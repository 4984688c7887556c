"""Re-initialise the head of saved networks and train on: does the recurrent stack hold the task?

Reads result or checkpoint files (e.g. a `bench/convergence.py --state-dir`), applies a restart
of kind "head" to each network (``training.restart``: the linear head re-drawn from the network's
next restart seed, its Adam moments zeroed; the recurrent stack and its optimiser state go on),
and trains all of them together for ``--epochs`` more epochs with their own recipe, printing
the validation accuracy after every epoch (``*``: converged). This is how we found that stuck
EightBit and ParityModified networks had learned the task in their GRU and lost it in the head
(docs/difficulty.md).

    python bench/head_restart.py --epochs 40 runs/v5-eightbit/EightBitMachine-seed1.h5 runs/v5-eightbit/EightBitMachine-seed2.h5
"""

import dataclasses
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from boinc_app import training  # noqa: E402
from boinc_app.result_file import read_result  # noqa: E402
from boinc_app.task_data import stack_tasks  # noqa: E402
from workgen.specs import with_recipe  # noqa: E402


NO_CAP = 10**9  # the loop below stops after --epochs


def head_restarted(path):
    """The spec (restart kind "head", no cap) and the head-restarted network of a one-network file."""
    spec, run, _ = read_result(path)
    if len(run.networks) != 1:
        raise click.UsageError(f"{path}: holds {len(run.networks)} networks; this tool takes one-network files")
    network = run.networks[0]
    spec = with_recipe(spec, restart_kinds="head")
    spec = dataclasses.replace(spec, max_epochs=NO_CAP, epoch_budget=NO_CAP)
    training.restart(spec.architecture, spec.recipe, network)
    network.status = training.TRAINING
    return spec, network


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--epochs", default=40, type=int, help="epochs to train after the head restart")
@click.option("--threads", default=1, type=int)
def main(paths, epochs, threads):
    torch.set_num_threads(threads)
    specs, networks = zip(*(head_restarted(path) for path in paths))
    if len({spec.recipe for spec in specs}) > 1:
        raise click.UsageError("the files were trained with different recipes; one ensemble trains with one")
    data = stack_tasks(specs)
    click.echo("epoch " + " ".join(f"{Path(p).stem:>12.12}" for p in paths))
    started = time.monotonic()
    for epoch in range(1, epochs + 1):
        active = [k for k, n in enumerate(networks) if n.status == training.TRAINING]
        if not active:
            break
        rules = [specs[k].convergence for k in active]
        training.run_epoch(specs[active[0]], data, [networks[k] for k in active], np.array(active), rules=rules)
        marks = [f"{n.history['validation_accuracy'][-1] * 100:11.2f}{'*' if n.status == training.CONVERGED else ' '}" for n in networks]
        click.echo(f"{epoch:5d} " + " ".join(marks) + f"   {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
