"""Where an epoch of the ensemble trainer spends its time: ``torch.profiler`` over one epoch.

Prints the operators by total device time (CUDA) or CPU time, and the share of the epoch's wall
time the device was busy: on a GPU, a low share means the epoch is bound by launching kernels
from Python, not by the device.

    python bench/profile_epoch.py --device cuda --networks 1024 --batches 4
"""

import sys
import time
from pathlib import Path

import click
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boinc_app import training  # noqa: E402
from boinc_app.task_data import task_data  # noqa: E402
from workgen.specs import make_spec, with_data  # noqa: E402


@click.command()
@click.option("--device", default="cpu")
@click.option("--networks", default=64, type=int)
@click.option("--batches", default=4, type=int)
@click.option("--length", default=100, type=int)
@click.option("--rows", default=15, type=int, help="operators to print")
@click.option("--threads", default=1, type=int, help="CPU threads (the trainer's default is 1 per process)")
def main(device, networks, batches, length, rows, threads):
    torch.set_num_threads(threads)
    spec = make_spec("DS1", "SimpleXORMachine", networks=networks, seed=1)
    spec = with_data(spec, train_size=32 * batches, validation_size=32, length=length)
    data = task_data(spec)
    state = training.initial_state(spec)
    index = [0] * networks
    training.run_epoch(spec, data, state.networks, index, device)  # warm-up
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        training.run_epoch(spec, data, state.networks, index, device)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
    averages = prof.key_averages()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    click.echo(averages.table(sort_by=sort, row_limit=rows))
    if cuda:
        busy = sum(e.self_device_time_total for e in averages) / 1e6
        click.echo(f"epoch wall {wall:.3f} s; device busy {busy:.3f} s ({100 * busy / wall:.0f} %)")
    else:
        click.echo(f"epoch wall {wall:.3f} s")


if __name__ == "__main__":
    main()
