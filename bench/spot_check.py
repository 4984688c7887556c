"""How far apart honest re-executions of a network are, and how far forged ones: the spot check's
tolerance (docs/spot-check.md).

A spot check re-trains part of a returned network on the server and compares. That works only if
honest training, redone elsewhere, lands much closer to the volunteer's numbers than anything a
cheater can return without doing the work. This benchmark trains the same networks of one
workunit under the settings an honest volunteer and the server may differ in, each setting in its
own process, and keeps weight and Adam-moment snapshots at fixed epochs:

- ensemble grouping: the network trained inside the workunit's ensemble of K = 32, in one of
  K = 8, and alone (K = 1, what a server re-executing one network does);
- torch threads 1 vs 2;
- CPU code paths: only this machine's CPU is at hand, so other CPU models are *emulated* by
  forcing PyTorch's vector kernels (``ATEN_CPU_CAPABILITY``) and MKL's BLAS kernels
  (``MKL_ENABLE_INSTRUCTIONS``) down to older instruction sets; a real other CPU (another vendor,
  ARM, another BLAS) may differ more;
- other seeds: every other network of the workunit (what a network trained from another seed, or
  copied from another network, looks like), and each network's distance to every network's
  initial weights (the lineage check).

    python bench/spot_check.py --quick            # smoke run, under a minute
    python bench/spot_check.py                    # every CPU configuration: ~2 h on a busy 2-vCPU VM
    python bench/spot_check.py --report-only      # the tables from what runs/spot-check holds
    python bench/spot_check.py --gpu              # the CUDA configurations (then --report-only)
    python bench/spot_check.py --timing 3         # a network-epoch alone vs in the workunit's ensemble
    python bench/spot_check.py --check-cost 50    # train a DS1 workunit 50 epochs, time its spot check

Every configuration writes one ``.npz`` under ``--out`` (default ``runs/spot-check``) and, after
every snapshot epoch, a partial one and a trainer checkpoint: a run stopped at any moment is
continued by the same command. Networks keep training after they meet the convergence rule (the
trainer would stop them), so every trajectory has every snapshot; that changes nothing else
(``run_epoch`` is per network).
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SNAPSHOTS = (1, 2, 5, 10, 20, 50, 100, 150, 200)
DS1 = {"dataset": "DS1", "task": "EightBitMachine", "workunit": 32}
DS3 = {"dataset": "DS3", "task": "automaton-000", "workunit": 8}
OTHER_CPU = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "mkl-sse42": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def configurations(quick, gpu=False):
    """``{name: config}``; a config trains ``indices`` of a workunit in ensembles of ``K``."""
    if quick:
        small = {**DS1, "workunit": 4, "epochs": 2}
        return {
            "quick-k4": {**small, "indices": [0, 1, 2, 3], "K": 4},
            "quick-k1": {**small, "indices": [0], "K": 1},
            "quick-aten-default": {**small, "indices": [0, 1, 2, 3], "K": 4, "env": OTHER_CPU["aten-default"]},
        }
    eight = {**DS1, "indices": list(range(8)), "K": 8}
    if gpu:  # CPU vs GPU: the same networks as ds1-k32 / ds3-k8, on the GPU
        return {
            "ds1-k32-cuda": {**DS1, "indices": list(range(32)), "K": 32, "epochs": 50, "device": "cuda"},
            "ds3-k8-cuda": {**DS3, "indices": list(range(8)), "K": 8, "epochs": 10, "device": "cuda"},
        }
    return {
        "ds1-k32": {**DS1, "indices": list(range(32)), "K": 32, "epochs": 20},
        "ds1-k8": {**eight, "epochs": 200},
        "ds1-k1": {**DS1, "indices": [0, 1], "K": 1, "epochs": 20},
        "ds1-k8-threads2": {**eight, "epochs": 5, "threads": 2},
        "ds1-k8-avx2": {**eight, "epochs": 10, "env": OTHER_CPU["avx2"]},
        "ds1-k8-aten-default": {**eight, "epochs": 200, "env": OTHER_CPU["aten-default"]},
        "ds1-k8-mkl-sse42": {**eight, "epochs": 50, "env": OTHER_CPU["mkl-sse42"]},
        "ds3-k8": {**DS3, "indices": list(range(8)), "K": 8, "epochs": 10},
        "ds3-k1": {**DS3, "indices": [0, 1], "K": 1, "epochs": 10},
        "ds3-k8-aten-default": {**DS3, "indices": list(range(8)), "K": 8, "epochs": 10, "env": OTHER_CPU["aten-default"]},
    }


# pairs compared: (honest reference, honest other setting); the last column names the setting
COMPARISONS = [
    ("quick-k4", "quick-k1", "K=4 vs K=1"),
    ("quick-k4", "quick-aten-default", "ATen default kernels"),
    ("ds1-k32", "ds1-k8", "K=32 vs K=8"),
    ("ds1-k32", "ds1-k1", "K=32 vs K=1"),
    ("ds1-k8", "ds1-k8-threads2", "threads 1 vs 2"),
    ("ds1-k8", "ds1-k8-avx2", "ATen+MKL AVX2 (not AVX-512)"),
    ("ds1-k8", "ds1-k8-mkl-sse42", "MKL SSE4.2"),
    ("ds1-k8", "ds1-k8-aten-default", "ATen default (no vector) kernels"),
    ("ds1-k32", "ds1-k8-aten-default", "K=32 vs ATen default kernels, K=8"),
    ("ds1-k8-mkl-sse42", "ds1-k8-aten-default", "MKL SSE4.2 vs ATen default"),
    ("ds3-k8", "ds3-k1", "DS3 K=8 vs K=1"),
    ("ds3-k8", "ds3-k8-aten-default", "DS3 ATen default kernels"),
    ("ds1-k32", "ds1-k32-cuda", "CPU vs CUDA"),
    ("ds3-k8", "ds3-k8-cuda", "DS3 CPU vs CUDA"),
]


# ---------------------------------------------------------------- worker (one configuration)


def flat(tensors):
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in tensors.values()])


def train_configuration(config, out_path):
    """Train the configuration's networks; after every snapshot epoch, save the snapshots so far
    (``<name>.partial.npz``) and a trainer checkpoint (``<name>.h5``) to continue from; at the
    end, ``<name>.npz``."""
    import torch

    from boinc_app import training
    from boinc_app.result_file import read_result, write_result
    from boinc_app.task_data import task_data
    from workgen.specs import make_spec

    torch.set_num_threads(config.get("threads", 1))
    spec = make_spec(config["dataset"], config["task"], networks=config["workunit"], seed=1, epoch_budget=config["epochs"])
    data = task_data(spec)  # the workunit's data; the spec below keeps only the networks trained here
    spec = dataclasses.replace(spec, networks=tuple(spec.networks[i] for i in config["indices"]))
    checkpoint, partial = out_path.with_suffix(".h5"), out_path.with_suffix(".partial.npz")
    state = read_result(checkpoint, spec=spec)[1] if checkpoint.exists() else training.initial_state(spec)
    networks = state.networks
    saved = dict(np.load(partial)) if partial.exists() and checkpoint.exists() else {"seconds": np.zeros((0, 3))}
    K = config["K"]
    groups = [networks[i : i + K] for i in range(0, len(networks), K)]
    device = config.get("device", "cpu")
    for epoch in range(networks[0].epochs + 1, config["epochs"] + 1):
        for group in groups:
            started = time.perf_counter()
            training.run_epoch(spec, data, group, np.zeros(len(group), dtype=np.int64), device=device)
            saved["seconds"] = np.vstack([saved["seconds"], [(epoch, len(group), time.perf_counter() - started)]])
        if epoch in SNAPSHOTS or epoch == config["epochs"]:
            save_snapshot(saved, config, networks, epoch, training.HISTORY_FIELDS)
            np.savez(partial.with_suffix(".tmp.npz"), **saved)
            os.replace(partial.with_suffix(".tmp.npz"), partial)
            write_result(checkpoint, spec, training.RunState(spec.fingerprint(), networks), complete=False)
        print(f"{out_path.name}: epoch {epoch}", file=sys.stderr, flush=True)
    os.replace(partial, out_path)
    checkpoint.unlink()


def save_snapshot(saved, config, networks, epoch, fields):
    for i, network in zip(config["indices"], networks):
        for name in ("weights", "exp_avg", "exp_avg_sq"):
            saved[f"{name}/{i}/{epoch}"] = flat(getattr(network, name))
        for field in fields:
            saved[f"history/{i}/{field}"] = np.asarray(network.history[field])
        saved[f"restarts/{i}"] = np.asarray(network.restart_epochs, dtype=np.int64)
    saved["config"] = np.asarray(json.dumps(config))


def time_alone_vs_ensemble(dataset, task, workunit, rounds):
    """Seconds per network-epoch (training + validation) of the workunit's ensemble and of one
    network alone, in interleaved rounds (this VM's speed drifts); returns the medians."""
    import torch

    from boinc_app import training
    from boinc_app.task_data import task_data
    from workgen.specs import make_spec

    torch.set_num_threads(1)
    spec = make_spec(dataset, task, networks=workunit, seed=1)
    data = task_data(spec)
    times = {workunit: [], 1: []}
    for _ in range(rounds):
        for K in times:
            networks = training.initial_state(spec).networks[:K]
            started = time.perf_counter()
            training.run_epoch(spec, data, networks, np.zeros(K, dtype=np.int64))
            times[K].append((time.perf_counter() - started) / K)
    return {K: float(np.median(t)) for K, t in times.items()}


def check_cost(dataset, task, workunit, epochs):
    """CPU seconds of training a workunit (the volunteer's ``training.train``) and of
    ``spot_check`` on its result at the default budget, in this process (one thread)."""
    import torch

    from boinc_app import training
    from boinc_app.standalone import SilentControl
    from boinc_app.task_data import task_data
    from validator.spot_check import plan_reexecution, spot_check
    from workgen.specs import make_spec

    torch.set_num_threads(1)
    spec = make_spec(dataset, task, networks=workunit, seed=1, epoch_budget=epochs)
    data = task_data(spec)
    started = time.process_time()
    state = training.train(spec, data, training.initial_state(spec), SilentControl())
    trained = time.process_time() - started
    rng = np.random.default_rng(7)
    plan = plan_reexecution(state, np.random.default_rng(7))
    started = time.process_time()
    spot_check(spec, state, rng, data=data)
    checked = time.process_time() - started
    network_epochs = sum(n.epochs for n in state.networks)
    return trained, checked, network_epochs, plan


def run_configuration(name, config, out):
    """Run one configuration in its own process (so its environment and thread count hold)."""
    path = out / f"{name}.npz"
    if path.exists():
        return
    env = {**os.environ, **config.get("env", {})}
    command = [sys.executable, __file__, "--worker", json.dumps(config), "--out", str(path)]
    subprocess.run(command, env=env, check=True)


# ---------------------------------------------------------------- analysis


class Run:
    def __init__(self, path):
        self.npz = np.load(path)
        self.config = json.loads(str(self.npz["config"]))

    def snapshot_epochs(self):
        return sorted({int(k.split("/")[2]) for k in self.npz.files if k.startswith("weights/")})

    def get(self, name, i, epoch):
        return self.npz[f"{name}/{i}/{epoch}"]

    def history(self, i, field):
        return self.npz[f"history/{i}/{field}"]

    def restarts(self, i):
        return list(self.npz[f"restarts/{i}"])


def distance(a, b):
    """(max |a - b|, ||a - b|| / ||a||)."""
    return float(np.abs(a - b).max()), float(np.linalg.norm(a - b) / np.linalg.norm(a))


def compare_runs(a, b):
    """Per snapshot epoch: worst over the common networks of weight, moment and loss distances."""
    common = sorted(set(a.config["indices"]) & set(b.config["indices"]))
    rows = []
    for epoch in sorted(set(a.snapshot_epochs()) & set(b.snapshot_epochs())):
        w = [distance(a.get("weights", i, epoch), b.get("weights", i, epoch)) for i in common]
        moments = [max(distance(a.get(name, i, epoch), b.get(name, i, epoch))[1] for i in common)
                   for name in ("exp_avg", "exp_avg_sq")]  # fmt: skip
        losses = [max(relative(a.history(i, name)[epoch - 1], b.history(i, name)[epoch - 1]) for i in common)
                  for name in ("train_loss", "validation_loss")]  # fmt: skip
        accuracy = max(abs(_accuracy(a, i, epoch) - _accuracy(b, i, epoch)) for i in common)
        same_restarts = all(_restarts_until(a, i, epoch) == _restarts_until(b, i, epoch) for i in common)
        rows.append((epoch, max(x[0] for x in w), max(x[1] for x in w), *moments, *losses, accuracy, same_restarts))
    return len(common), rows


def _accuracy(run, i, epoch):
    return run.history(i, "validation_accuracy")[epoch - 1]


def _restarts_until(run, i, epoch):
    return [r for r in run.restarts(i) if r <= epoch]


def relative(x, y):
    return abs(x - y) / max(abs(x), 1e-30)


def other_seed_rows(run):
    """Per epoch: the smallest distance between two different networks of the run (seeds s, s')."""
    indices = run.config["indices"]
    pairs = [(i, j) for i in indices for j in indices if i < j]
    rows = []
    for epoch in run.snapshot_epochs():
        rel = [distance(run.get("weights", i, epoch), run.get("weights", j, epoch))[1] for i, j in pairs]
        loss, train = ([relative(run.history(i, name)[epoch - 1], run.history(j, name)[epoch - 1]) for i, j in pairs]
                       for name in ("validation_loss", "train_loss"))  # fmt: skip
        both = [max(a, b) for a, b in zip(loss, train)]
        rows.append((epoch, len(pairs), min(rel), float(np.median(rel)), min(loss), min(train), min(both)))
    return rows


def skipped_epoch_rows(run):
    """Per pair of consecutive snapshot epochs (e1, e2): how far a network at e2 is from itself at
    e1 (min over networks): what a result that skipped its last e2 - e1 epochs differs by."""
    indices, epochs = run.config["indices"], run.snapshot_epochs()
    rows = []
    for e1, e2 in zip(epochs, epochs[1:]):
        w = [distance(run.get("weights", i, e2), run.get("weights", i, e1))[1] for i in indices]
        losses = {i: run.history(i, "validation_loss") for i in indices}
        loss = [relative(losses[i][e2 - 1], losses[i][e1 - 1]) for i in indices]
        step = [relative(losses[i][e2 - 1], losses[i][e2 - 2]) for i in indices]
        rows.append((e1, e2, min(w), float(np.median(w)), min(loss), min(step), float(np.median(step))))
    return rows


def lineage_rows(run):
    """Per epoch: cosine of each network's recurrent weights with its own initial recurrent weights
    (min over networks) and with any other network's (max over pairs)."""
    from boinc_app.training import initial_weights
    from workgen.specs import make_spec

    config = run.config
    spec = make_spec(config["dataset"], config["task"], networks=config["workunit"], seed=1)
    indices = config["indices"]
    inits = {i: initial_weights(spec.architecture, spec.recipe, spec.networks[i].init_seed) for i in indices}
    rnn = [k for k in inits[indices[0]] if k.startswith("rnn.")]
    count = sum(inits[indices[0]][k].size for k in rnn)
    init_rnn = {i: np.concatenate([inits[i][k].ravel() for k in rnn]) for i in indices}
    rows = []
    for epoch in run.snapshot_epochs():
        own, other = [], []
        for i in indices:
            w = run.get("weights", i, epoch)[:count]  # rnn.* come first in the state dict
            own.append(cosine(w, init_rnn[i]))
            other.extend(abs(cosine(w, init_rnn[j])) for j in indices if j != i)
        rows.append((epoch, min(own), float(np.median(own)), max(other)))
    return rows


def follow_up_lineage_rows(run, spans=((1, 20), (10, 50), (50, 100), (100, 150), (100, 200), (50, 200), (1, 200))):
    """Per (e1, e2): cosine of each network's recurrent weights at e2 with its own at e1 (min over
    networks) and with another network's at e1 (max over pairs): a follow-up's lineage."""
    indices, epochs = run.config["indices"], set(run.snapshot_epochs())
    first = run.get("weights", indices[0], min(epochs))
    count = first.size - sum(np.prod(s) for s in _head_shapes(run))
    rows = []
    for e1, e2 in [span for span in spans if set(span) <= epochs]:
        at = {(i, e): run.get("weights", i, e)[:count] for i in indices for e in (e1, e2)}
        own = [cosine(at[i, e2], at[i, e1]) for i in indices]
        other = [cosine(at[i, e2], at[j, e1]) for i in indices for j in indices if j != i]
        rows.append((e1, e2, min(own), max(other)))
    return rows


def _head_shapes(run):
    from workgen.datasets import get_dataset
    from boinc_app.networks import expected_shapes

    shapes = expected_shapes(get_dataset(run.config["dataset"]).architecture)
    return [shape for key, shape in shapes.items() if key.startswith("head.")]


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def timing_rows(runs):
    """Seconds per network-epoch (median over epochs) by configuration."""
    rows = []
    for name, run in runs.items():
        seconds = run.npz["seconds"]
        per_network = seconds[:, 2] / seconds[:, 1]
        rows.append((name, int(run.config["K"]), run.config.get("threads", 1), float(np.median(per_network))))
    return rows


def _table(title, header, rows):
    cell = lambda x: f"{x:.3g}" if isinstance(x, float) else str(x)  # noqa: E731
    return ["", f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cell(x) for x in row) + " |" for row in rows
    ]


def report(out):
    paths = [p for p in sorted(out.glob("*.npz")) if not p.name.endswith(".tmp.npz")]
    runs = {p.stem.removesuffix(".partial"): Run(p) for p in sorted(paths, key=lambda p: "partial" not in p.name)}
    header = ["setting", "nets", "epoch", "weights max abs", "weights rel L2", "exp_avg rel L2", "exp_avg_sq rel L2",
              "train loss rel", "val loss rel", "val acc abs", "same restarts"]  # fmt: skip
    rows = [(label, *compare_runs(runs[a], runs[b])) for a, b, label in COMPARISONS if a in runs and b in runs]
    rows = [(label, n, *row) for label, n, table in rows for row in table]
    lines = _table("Honest settings (worst network of those both runs trained)", header, rows)
    for name in [n for n in ("ds1-k32", "ds3-k8", "quick-k4") if n in runs]:
        header = ["epoch", "pairs", "weights rel L2 min", "median", "val loss rel min", "train loss rel min",
                  "max(train, val) min"]  # fmt: skip
        lines += _table(f"Other seeds ({name}: pairs of different networks)", header, other_seed_rows(runs[name]))
    for name in [n for n in ("ds1-k8", "ds3-k8", "quick-k4") if n in runs]:
        header = ["e1", "e2", "weights rel L2 min", "median", "val loss rel min", "e2 vs e2-1: val loss rel min", "median"]
        title = f"Skipped epochs ({name}): a network at e2 against itself at e1, and at e2 - 1"
        lines += _table(title, header, skipped_epoch_rows(runs[name]))
    for name in [n for n in ("ds1-k8", "ds1-k32", "ds3-k8", "quick-k4") if n in runs]:
        header = ["epoch", "own init, min", "own init, median", "another's init, max abs"]
        title = f"Lineage ({name}): cosine of recurrent weights with initial recurrent weights"
        lines += _table(title, header, lineage_rows(runs[name]))
    for name in [n for n in ("ds1-k8", "ds3-k8") if n in runs and len(runs[n].snapshot_epochs()) > 2]:
        header = ["e1", "e2", "own, min", "another's, max"]
        title = f"Follow-up lineage ({name}): cosine of recurrent weights at e2 with those at e1"
        lines += _table(title, header, follow_up_lineage_rows(runs[name]))
    header = ["configuration", "K", "threads", "s per network-epoch"]
    lines += _table("Time per network-epoch (training + validation, median over epochs)", header, timing_rows(runs))
    return "\n".join(lines)


@click.command()
@click.option("--quick", is_flag=True, help="4 networks, 2 epochs: a smoke run")
@click.option("--gpu", is_flag=True, help="the CUDA configurations (compare with a CPU run's --out)")
@click.option("--out", default="runs/spot-check", type=click.Path(file_okay=False), help="where the runs are kept")
@click.option("--jobs", default=2, type=int, help="configurations run at once (one thread each)")
@click.option("--only", default="", help="comma-separated configuration names (default: all)")
@click.option("--report-only", is_flag=True, help="print the tables of what --out holds")
@click.option("--timing", "timing_rounds", default=0, type=int, help="only time ensemble vs alone, this many rounds")
@click.option("--check-cost", "cost_epochs", default=0, type=int, help="only train a DS1 workunit so many epochs, time its check")
@click.option("--worker", hidden=True, help="internal: train one configuration (JSON)")
def main(quick, gpu, out, jobs, only, report_only, timing_rounds, cost_epochs, worker):
    out = Path(out)
    if cost_epochs:
        trained, checked, network_epochs, plan = check_cost(DS1["dataset"], DS1["task"], DS1["workunit"], cost_epochs)
        click.echo(f"{DS1['task']}, {DS1['workunit']} networks, {network_epochs} network-epochs: training {trained:.1f} CPU s, "
                   f"spot check {checked:.2f} CPU s ({100 * checked / trained:.2f} %), plan {plan}")
        return
    if timing_rounds:
        for setting in (DS1, DS3):
            seconds = time_alone_vs_ensemble(setting["dataset"], setting["task"], setting["workunit"], timing_rounds)
            K = setting["workunit"]
            ratio = seconds[1] / seconds[K]
            text = f"K={K} {seconds[K]:.3f} s, alone {seconds[1]:.3f} s per network-epoch, ratio {ratio:.2f}"
            click.echo(f"{setting['dataset']}: {text}")
        return
    if worker:
        train_configuration(json.loads(worker), out)
        return
    out.mkdir(parents=True, exist_ok=True)
    if not report_only:
        todo = configurations(quick, gpu)
        # --only: in the order given; else the longest first, so two jobs finish at about one time
        order = only.split(",") if only else sorted(todo, key=lambda n: -len(todo[n]["indices"]) * todo[n]["epochs"])
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda name: run_configuration(name, todo[name], out), order))
    import platform

    click.echo(f"command: python bench/spot_check.py {' '.join(sys.argv[1:])}")
    click.echo(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}\n")
    click.echo(report(out))


def _cpu_model():
    from boinc_app.result_file import device_name

    return device_name("cpu")


if __name__ == "__main__":
    main()
