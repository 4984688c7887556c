"""Training speed: the naive way (one ``nn.GRU`` network) against our stacked ensemble trainer.

Measures, in one run and on one thread, training network-epochs per hour per core of a DS1 network
(4,364 parameters; batch 32; the spec's training-set size; sequence length ``--length``):

- **naive**: one ``boinc_app.networks.RecurrentNet`` (``nn.GRU`` + linear head), the same loss,
  ``torch.optim.Adam`` with the recipe's hyperparameters and gradient clipping;
- **ours**: ``boinc_app.training.run_epoch``, the trainer's own epoch, for K networks at once.

Each configuration runs in its own child process (so its peak memory is its own) for a few
batches after a warm-up; an epoch's time is the time per batch times the batches in an epoch (the
validation pass is left out of both sides: it is the same forward pass, a small share of an
epoch). GFLOP/s uses ``boinc_app.flops``'s analytic count (training = 3 x forward), against a
large float32 matrix multiply measured in the same run as the ceiling. The last line is
``speedup: <ratio>``: ours at the trainer's own K choice against naive.

A shared VM's speed drifts by tens of percent over minutes, so the configurations are measured in
``--repeats`` interleaved rounds (naive, then every K, then again) and each row is the round with
the median time per batch: drift hits every configuration alike, and one disturbed round moves
no row.

    python bench/train_speed.py                 # K in 1, 8, 32, 64, 128, 256; length 100
    python bench/train_speed.py --quick         # under a minute: K in 1, 64, one round
    python bench/train_speed.py --device cuda --ks 256,1024,4096,8192
"""

import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boinc_app import flops, training  # noqa: E402
from boinc_app.ensemble_size import ensemble_size  # noqa: E402
from boinc_app.networks import build_network  # noqa: E402
from boinc_app.result_file import device_name  # noqa: E402
from boinc_app.task_data import per_network_loss, task_data  # noqa: E402
from workgen.specs import make_spec, with_data  # noqa: E402

TASKS = {"DS1": "SimpleXORMachine", "DS2": "SimpleXORModified", "DS3": "automaton-000"}


def bench_spec(dataset, networks, length, batches):
    spec = make_spec(dataset, TASKS[dataset], networks=networks, seed=1)
    size = spec.recipe.batch_size * batches
    return with_data(spec, train_size=size, validation_size=spec.recipe.batch_size, length=length)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_naive(dataset, length, batches, device):
    """Seconds per batch of one ``nn.GRU``/``nn.LSTM`` network trained the usual way."""
    spec = bench_spec(dataset, 1, length, batches)
    data = task_data(spec)
    recipe = spec.recipe
    model = build_network(spec.architecture, 1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate, betas=recipe.betas, eps=recipe.eps)
    inputs, targets, weights = (t[0].to(device) for t in (data.train.inputs, data.train.targets, data.loss_weights))
    before = peak_rss_mb()

    def one_batch(start):
        rows = slice(start, start + recipe.batch_size)
        logits = model(inputs[rows])
        loss = per_network_loss(data.kind, logits[None], targets[None, rows], weights[None, rows])[0]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
        optimizer.step()

    starts = range(0, inputs.shape[0], recipe.batch_size)
    for start in list(starts)[:2]:
        one_batch(start)
    _sync(device)
    started = time.perf_counter()
    for start in starts:
        one_batch(start)
    _sync(device)
    return (time.perf_counter() - started) / batches, 0.0, peak_rss_mb() - before


def time_ours(dataset, networks, length, batches, device):
    """Seconds per batch of ``networks`` networks trained by the trainer's own epoch, and the
    epoch's fixed cost (stacking, scoring, writing states back), from epochs of ``batches`` and
    ``2 * batches`` batches: per batch = the difference / ``batches``."""
    timed = []
    before = peak_rss_mb()
    state = training.initial_state(bench_spec(dataset, networks, length, batches))
    index = torch.zeros(networks, dtype=torch.int64).numpy()
    for size in (batches, 2 * batches):
        spec = bench_spec(dataset, networks, length, size)
        data = task_data(spec)
        if not timed:
            training.run_epoch(spec, data, state.networks, index, device)  # warm-up
        _sync(device)
        started = time.perf_counter()
        training.run_epoch(spec, data, state.networks, index, device)
        _sync(device)
        timed.append(time.perf_counter() - started)
    per_batch = max(timed[1] - timed[0], 0.0) / batches
    return per_batch, timed[0] - batches * per_batch, peak_rss_mb() - before


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def matmul_ceiling(device, size=1024, repeats=20):
    a = torch.randn(size, size, device=device)
    a @ a
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ a
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def run_child(args):
    """One configuration in a fresh process; returns its JSON record."""
    command = [sys.executable, __file__, "--child", json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:  # e.g. out of device memory: say so, measure the rest
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        click.echo(f"K = {args.get('networks', 1)} failed: {reason}", err=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args):
    torch.set_num_threads(1)
    if args["kind"] == "naive":
        per_batch, fixed, memory = time_naive(args["dataset"], args["length"], args["batches"], args["device"])
        networks = 1
    else:
        per_batch, fixed, memory = time_ours(args["dataset"], args["networks"], args["length"], args["batches"], args["device"])
        networks = args["networks"]
    if str(args["device"]).startswith("cuda"):
        memory = torch.cuda.max_memory_allocated(args["device"]) / 2**20  # device memory, not host
    record = {"seconds_per_batch": per_batch, "seconds_per_epoch_fixed": fixed, "memory_mb": memory}
    print(json.dumps({**args, **record, "networks": networks}))


def median_rounds(configurations, repeats):
    """Each configuration's record from the round with its median time per batch (None if it
    failed in every round), measured in ``repeats`` interleaved rounds."""
    rounds = [[run_child(args) for args in configurations] for _ in range(repeats)]
    medians = []
    for index in range(len(configurations)):
        measured = sorted((r for r in (one[index] for one in rounds) if r), key=lambda r: r["seconds_per_batch"])
        medians.append(measured[(len(measured) - 1) // 2] if measured else None)
    return medians


def network_epoch_seconds(record, train_size, batch_size):
    epoch = record["seconds_per_batch"] * math.ceil(train_size / batch_size) + record["seconds_per_epoch_fixed"]
    return epoch / record["networks"]


@click.command()
@click.option("--ks", default="1,8,32,64,128,256", help="ensemble sizes to measure")
@click.option("--length", default=100, type=int, help="sequence length")
@click.option("--batches", default=12, type=int, help="timed batches per configuration")
@click.option("--device", default="cpu")
@click.option("--dataset", default="DS1", type=click.Choice(sorted(TASKS)), help="DS1/DS2: GRU; DS3: LSTM")
@click.option("--repeats", default=3, type=int, help="interleaved rounds; each row is the median round")
@click.option("--quick", is_flag=True, help="K in 1 and 64, 4 batches, one round (under a minute)")
@click.option("--child", "child_args", hidden=True)
def main(ks, length, batches, device, dataset, repeats, quick, child_args):
    if child_args:
        child(json.loads(child_args))
        return
    torch.set_num_threads(1)
    if quick:
        ks, batches, repeats = "1,64", 4, 1
    spec = make_spec(dataset, TASKS[dataset])
    train_size, batch_size = spec.data.train_size, spec.recipe.batch_size
    step_flops = flops.forward_step_flops(spec.architecture) * flops.TRAINING_FACTOR * batch_size * length
    ceiling = matmul_ceiling(device, size=8192 if device.startswith("cuda") else 1024)
    base = {"dataset": dataset, "length": length, "batches": batches, "device": device}
    configurations = [{**base, "kind": "naive"}] + [{**base, "kind": "ours", "networks": int(k)} for k in ks.split(",")]
    naive, *records = median_rounds(configurations, repeats)
    if naive is None:
        raise click.ClickException("the naive baseline failed (see above)")
    records = [r for r in records if r]
    naive_epoch = network_epoch_seconds(naive, train_size, batch_size)
    naive_name = f"naive nn.{spec.architecture.cell.upper()}"
    click.echo(f"{dataset} {TASKS[dataset]}, length {length}, {train_size} training sequences, batch {batch_size}, "
               f"1 thread, {device_name(device)}; torch {torch.__version__}")
    click.echo(f"large-matmul ceiling: {ceiling:.1f} GFLOP/s; each row the median of {repeats} interleaved round(s)\n")
    unit = "GPU" if device.startswith("cuda") else "core"
    click.echo(f"| trainer | K | s per network-epoch | network-epochs/h/{unit} | GFLOP/s | of ceiling | MB per network | vs naive |")
    click.echo("|---|---|---|---|---|---|---|---|")
    rows = [(naive_name, naive)] + [("ours", r) for r in records]
    for label, record in rows:
        epoch = network_epoch_seconds(record, train_size, batch_size)
        rate = step_flops * record["networks"] / record["seconds_per_batch"] / 1e9
        click.echo(
            f"| {label} | {record['networks']} | {epoch:.3f} | {3600 / epoch:,.0f} | {rate:.2f} | "
            f"{100 * rate / ceiling:.1f} % | {record['memory_mb'] / record['networks']:.2f} | {naive_epoch / epoch:.2f} |"
        )
    own = ensemble_size(device, spec.architecture, length)
    pick = min(records, key=lambda r: abs(r["networks"] - min(own, max(q["networks"] for q in records))))
    click.echo(f"\ntrainer's own K for this device: {own} (measured nearest: {pick['networks']})")
    click.echo(f"speedup: {naive_epoch / network_epoch_seconds(pick, train_size, batch_size):.2f}")


if __name__ == "__main__":
    main()
