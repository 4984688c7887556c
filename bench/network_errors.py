"""Where does a DS1/DS2 network err on its validation set?

Reads result or checkpoint files (a `--state-dir` of `bench/convergence.py`, a workunit's result)
and prints, per network: accuracy per output bit, the error rate of READ steps by how many steps
ago the last WRITE was, and, for the worst bit, the written byte values it gets wrong more often
than not. It told us how EightBit networks get stuck (docs/difficulty.md): seven bits perfect,
one bit wrong for a family of byte values, at every distance from the write, so a collision in
how the byte is encoded rather than a memory that fades.

    python bench/network_errors.py --probe runs/v5-eightbit/EightBitMachine-seed2.h5

With ``--probe`` it also asks whether the recurrent stack still holds a bit the network gets
wrong: for the stuck EightBit networks it does (an MLP reads all eight bits from the top GRU
layer's state without error), so the bits are lost in the 24-8-8 head.
"""

import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from boinc_app.networks import module_with_weights  # noqa: E402
from boinc_app.result_file import read_result  # noqa: E402
from boinc_app.task_data import task_data  # noqa: E402

GAP_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 49))
WRITE, BYTE_BITS = 1, slice(3, 11)  # input columns (spec §1)


def steps_since_write(inputs):
    """``[N, L]``: steps since the last WRITE at or before each step (-1: none yet), and that byte."""
    writes = inputs[..., WRITE].numpy() > 0.5
    byte = (inputs[..., BYTE_BITS].numpy() * 2 ** np.arange(8)).sum(-1).round().astype(int)
    gaps, held = np.full(writes.shape, -1), np.zeros(writes.shape, dtype=int)
    last, value = np.full(writes.shape[0], -1), np.zeros(writes.shape[0], dtype=int)
    for t in range(writes.shape[1]):
        last, value = np.where(writes[:, t], t, last), np.where(writes[:, t], byte[:, t], value)
        gaps[:, t], held[:, t] = np.where(last >= 0, t - last, -1), value
    return gaps, held


def probe_recurrent_state(module, inputs, targets, read, steps=3000):
    """Per-bit accuracy of an MLP (width 128) trained to read the target bits from the recurrent
    stack's top-layer state at READ steps: fitted on half of them, scored on the other half. Near
    100 % for a bit the network itself gets wrong: the state holds the bit, the head fails to
    decode it."""
    with torch.no_grad():
        features, targets = module.rnn(inputs)[0][read], targets[read]
    half = features.shape[0] // 2
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mlp = torch.nn.Sequential(
            torch.nn.Linear(features.shape[1], 128), torch.nn.Tanh(), torch.nn.Linear(128, 128), torch.nn.Tanh(),
            torch.nn.Linear(128, targets.shape[1]),
        )
    optimizer = torch.optim.Adam(mlp.parameters(), 3e-3)
    for _ in range(steps):
        rows = torch.randint(0, half, (512,), generator=generator)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(mlp(features[rows]), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return ((mlp(features[half:]) > 0).float() == targets[half:]).float().mean(0).numpy()


def describe(weights, spec, probe=False):
    validation = task_data(spec).validation  # tensors [1, N, L, ...]: one stacked task
    inputs, targets, scored = validation.inputs[0], validation.targets[0], validation.scored[0].numpy()
    module = module_with_weights(spec.architecture, weights)
    probed = probe_recurrent_state(module, inputs, targets, torch.from_numpy(scored.any(-1))) if probe else None
    with torch.no_grad():
        right = ((module(inputs) > 0).float() == targets).numpy()
    per_bit = [right[..., b][scored[..., b]].mean() if scored[..., b].any() else np.nan for b in range(8)]
    gaps, held = steps_since_write(inputs)
    read = scored.any(-1)
    wrong_step = (~right.astype(bool) & scored).any(-1)
    by_gap = []
    for low, high in GAP_BINS:
        pick = read & (gaps >= low) & (gaps <= high)
        by_gap.append(f"{low}-{high}: {wrong_step[pick].mean() * 100:.1f} % of {pick.sum()}" if pick.any() else f"{low}-{high}: -")
    worst = int(np.nanargmin(per_bit))
    bad_bytes = []
    for value in range(256):
        pick = scored[..., worst] & (held == value) & (gaps >= 0)
        if pick.any() and (1 - right[..., worst][pick]).mean() > 0.5:
            bad_bytes.append(f"{value:08b}")
    return per_bit, by_gap, worst, bad_bytes, probed


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--probe", is_flag=True, help="also read each bit from the recurrent state with an MLP (~30 s)")
def main(paths, probe):
    torch.set_num_threads(1)
    for path in paths:
        spec, run, _ = read_result(path)
        if spec.task["kind"] != "device":
            raise click.UsageError(f"{path}: a {spec.task['kind']} task; this tool reads DS1/DS2 networks")
        for network in run.networks:
            per_bit, by_gap, worst, bad_bytes, probed = describe(network.weights, spec, probe)
            accuracy = network.history["validation_accuracy"][-1] * 100
            click.echo(f"{Path(path).name} network {network.key}: epoch {network.epochs}, {accuracy:.2f} %, "
                       f"restarts after {list(network.restart_epochs) or 'none'}")
            click.echo("  accuracy per bit (LSB first): " + " ".join(f"{a * 100:.1f}" for a in per_bit))
            click.echo("  READs wrong, by steps since the last WRITE: " + "; ".join(by_gap))
            click.echo(f"  bit {worst}: {len(bad_bytes)} written values wrong more often than not: " + " ".join(bad_bytes))
            if probed is not None:
                click.echo("  an MLP reading the recurrent state, per bit: " + " ".join(f"{a * 100:.1f}" for a in probed))


if __name__ == "__main__":
    main()
