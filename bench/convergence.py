"""Difficulty table: how reliably and how fast each DS1/DS2 machine's and DS3 automaton's networks converge.

Trains ``seeds x machines`` networks (network seed = init seed = batch-order seed) with the current
recipe, all in one ensemble per process, until each converges or reaches the cap, and prints per
machine: share converged, median and worst epochs and CPU-seconds to converge, the final accuracy
of the rest, and for DS2 the post-trigger accuracy. CPU-seconds are the process CPU time of each
epoch divided among the networks trained in it (the ensemble's amortised cost).

    python bench/convergence.py                       # all ten machines, seeds 1-5, cap 300
    python bench/convergence.py --quick               # 2 machines, 2 seeds, cap 10
    python bench/convergence.py --machines EightBitMachine --seeds 1-3 --cap 500 --jsonl runs.jsonl
    python bench/convergence.py --table runs.jsonl    # the table from saved runs (several files ok)
    python bench/convergence.py --cap 3000 --state-dir runs/  # long run: the same command resumes it
    python bench/convergence.py --automata 0-95/5 --seeds 1-3 --cap 1000   # DS3: every fifth automaton

DS3 rows also give each automaton's structure (``machines.automata.structure``), so difficulty can
be related to it.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import machines  # noqa: E402
from boinc_app import training  # noqa: E402
from boinc_app.recipe import Recipe  # noqa: E402
from boinc_app.result_file import read_result, write_result  # noqa: E402
from boinc_app.task_data import stack_tasks  # noqa: E402
from machines.automata import structure  # noqa: E402
from workgen.specs import make_spec, with_architecture, with_data, with_recipe  # noqa: E402

# every recipe field by its declared type, Adam's beta2 on its own (beta1 stays)
RECIPE_OPTIONS = {f.name: f.type for f in dataclasses.fields(Recipe) if f.name != "betas"} | {"beta2": float}
DATA_OPTIONS = {"train_size": int, "near_miss_probability": float}
ARCHITECTURE_OPTIONS = {"activation": str}
RULE_OPTIONS = {"rule_accuracy": float}  # the convergence rule's accuracy threshold
SETTING_TYPES = {**RECIPE_OPTIONS, **DATA_OPTIONS, **ARCHITECTURE_OPTIONS, **RULE_OPTIONS}
SETTABLE = tuple(SETTING_TYPES)


def parse_seeds(text):
    if "-" in text:
        low, high = (int(v) for v in text.split("-"))
        return list(range(low, high + 1))
    return [int(v) for v in text.split(",")]


def parse_automata(text):
    """``0-95/5`` (every fifth from 0 to 95), ``3,7`` or ``12``: automaton names."""
    span, _, step = text.partition("/")
    low, _, high = span.partition("-")
    indices = range(int(low), int(high or low) + 1, int(step or 1)) if "," not in span else map(int, span.split(","))
    return [f"automaton-{k:03d}" for k in indices]


def dataset_of(name):
    if name.startswith("automaton-"):
        return "DS3"
    return "DS1" if name in machines.DS1_NAMES else "DS2"


def build_runs(machine_names, seeds, cap, recipe_changes):
    specs, rules = [], []
    for name in machine_names:
        dataset = dataset_of(name)
        for seed in seeds:
            spec = make_spec(dataset, name, networks=1, seed=seed, max_epochs=cap, epoch_budget=cap)
            changes = {k: v for k, v in recipe_changes.items() if k in RECIPE_OPTIONS}
            if "beta2" in changes:
                changes["betas"] = (spec.recipe.betas[0], changes.pop("beta2"))
            spec = with_recipe(spec, **changes)
            spec = with_data(spec, **{k: v for k, v in recipe_changes.items() if k in DATA_OPTIONS})
            if "activation" in recipe_changes:
                spec = with_architecture(spec, activation=recipe_changes["activation"])
            if "rule_accuracy" in recipe_changes:
                spec = dataclasses.replace(spec, convergence=dataclasses.replace(spec.convergence, accuracy=recipe_changes["rule_accuracy"]))
            specs.append(spec)
            rules.append(spec.convergence)
    return specs, rules


def train_all(specs, rules, progress=True, snapshot=None, state_dir=None):
    """Train one network per spec in one ensemble; returns one record per network.

    ``snapshot``: a path rewritten every 10 epochs with the records so far (``--table`` reads it).
    ``state_dir``: every network's state is saved there every 10 epochs (trainer checkpoint
    files) and loaded from there at start, so a long run stopped at any moment continues with the
    same command, losing at most 10 epochs.
    """
    data = stack_tasks(specs)
    states = [load_state(spec, state_dir) for spec in specs]
    template = specs[0]
    written_final = set()  # networks whose stopped state is already in state_dir
    started = time.monotonic()
    while True:
        active = [k for k, s in enumerate(states) if s.status == training.TRAINING]
        if not active:
            break
        training.run_epoch(
            template, data, [states[k] for k in active], np.array(active), rules=[rules[k] for k in active]
        )
        epoch = max(s.epochs for s in states)
        if epoch % 10 == 0:
            save_states(specs, states, snapshot, state_dir, written_final)
        if progress:
            print(f"epoch {epoch}: {len(active)} training, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    save_states(specs, states, snapshot, state_dir, written_final)
    return [record(spec, state) for spec, state in zip(specs, states)]


def _state_path(spec, state_dir):
    return Path(state_dir) / f"{spec.task_name}-seed{spec.networks[0].init_seed}.h5"


def load_state(spec, state_dir):
    if state_dir and _state_path(spec, state_dir).exists():
        return read_result(_state_path(spec, state_dir), spec=spec)[1].networks[0]
    return training.initial_state(spec).networks[0]


def save_states(specs, states, snapshot, state_dir, written_final):
    if snapshot:
        Path(snapshot).write_text("".join(json.dumps(record(spec, state)) + "\n" for spec, state in zip(specs, states)))
    if state_dir:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        for spec, state in zip(specs, states):
            path = _state_path(spec, state_dir)
            if path in written_final:
                continue  # stopped networks never change again
            run = training.RunState(spec.fingerprint(), [state])
            write_result(path, spec, run, complete=state.status != training.TRAINING)
            if state.status != training.TRAINING:
                written_final.add(path)


def record(spec, state):
    history = state.history
    return {
        "machine": spec.task_name,
        "seed": state.init_seed,
        "recipe": spec.recipe.to_dict(),
        "rule": spec.convergence.to_dict(),
        "activation": spec.architecture.activation,
        "data": {"train_size": spec.data.train_size, "near_miss_probability": spec.data.near_miss_probability},
        "cap": spec.max_epochs,
        "converged": state.status == training.CONVERGED,
        "epochs": state.epochs,
        "restart_epochs": list(state.restart_epochs),
        "cpu_seconds": state.cpu_seconds,
        "accuracy": history["validation_accuracy"][-1],
        "best_accuracy": max(history["validation_accuracy"]),
        "post_trigger_accuracy": history["post_trigger_accuracy"][-1],
        "train_loss": history["train_loss"][-1],
        "accuracy_history": [round(a, 6) for a in history["validation_accuracy"]],
        "post_trigger_history": [round(a, 6) for a in history["post_trigger_accuracy"]],
    }


def difficulty_table(records):
    automata = [r for r in records if r["machine"].startswith("automaton-")]
    devices = [r for r in records if not r["machine"].startswith("automaton-")]
    tables = [device_table(devices)] if devices else []
    return "\n\n".join(tables + ([automaton_table(automata)] if automata else []))


def automaton_table(records):
    """One row per automaton: its structure, then how its networks trained; a summary line."""
    lines = [
        "| automaton | states (minimal) | hidden states | outputs | majority share | mean memory | whole-prefix share | converged | median epochs | worst epochs | median CPU s | worst CPU s | final accuracy of the rest | restarts |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = sorted({r["machine"] for r in records})
    solved = 0
    for name in names:
        runs = [r for r in records if r["machine"] == name]
        done = [r for r in runs if r["converged"]]
        solved += 2 * len(done) > len(runs)  # a majority of its seeds
        shape = structure(machines.automaton(int(name.removeprefix("automaton-"))))
        lines.append(
            f"| {name} | {shape.states} ({shape.minimal_states}) | {shape.hidden_states} | {shape.output_symbols} | "
            f"{100 * shape.majority_share:.1f} % | {shape.mean_memory:.1f} | "
            f"{100 * shape.whole_prefix_share:.0f} % | {_converged_columns(runs, done)} | {_restarts_text(runs)} |"
        )
    lines.append(f"\nautomata whose networks converged for a majority of seeds: {solved} of {len(names)}")
    return "\n".join(lines)


def _converged_columns(runs, done):
    epochs = [r["epochs"] for r in done]
    cpu = [r["cpu_seconds"] for r in done]
    rest = [r for r in runs if not r["converged"]]
    rest_text = ", ".join(f"{100 * r['accuracy']:.2f} % (best {100 * r['best_accuracy']:.2f})" for r in rest) or "-"
    cap = max(r["cap"] for r in runs)
    return (
        f"{len(done)}/{len(runs)} (cap {cap}) | {_fmt(np.median(epochs) if epochs else None)} | "
        f"{_fmt(max(epochs) if epochs else None)} | {_fmt(np.median(cpu) if cpu else None, 1)} | "
        f"{_fmt(max(cpu) if cpu else None, 1)} | {rest_text}"
    )


def device_table(records):
    lines = [
        "| machine | converged | median epochs | worst epochs | median CPU s | worst CPU s | final accuracy of the rest | post-trigger (final) | restarts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [m for m in machines.MACHINE_NAMES if any(r["machine"] == m for r in records)]:
        runs = [r for r in records if r["machine"] == name]
        done = [r for r in runs if r["converged"]]
        post = "-" if name in machines.DS1_NAMES else ", ".join(f"{100 * r['post_trigger_accuracy']:.1f}" for r in runs)
        lines.append(f"| {name} | {_converged_columns(runs, done)} | {post} | {_restarts_text(runs)} |")
    return "\n".join(lines)


def _restarts_text(runs):
    """Restarts in all, and after which epochs (records before SPEC_VERSION 5 have none)."""
    epochs = [e for r in runs for e in r.get("restart_epochs", [])]
    if not epochs:
        return "0"
    return f"{len(epochs)} (after epoch{'s' if len(epochs) > 1 else ''} {', '.join(map(str, sorted(epochs)))})"


def record_at_epoch(record, epoch):
    """The record as it stood after ``epoch`` epochs (from its per-epoch histories)."""
    if record["converged"] and record["epochs"] <= epoch:
        return {**record, "cap": epoch}
    accuracy, post = record["accuracy_history"], record["post_trigger_history"]
    if len(accuracy) < epoch:
        raise click.UsageError(f"{record['machine']} seed {record['seed']} has only {len(accuracy)} epochs")
    return {**record, "cap": epoch, "converged": False, "epochs": epoch, "accuracy": accuracy[epoch - 1],
            "best_accuracy": max(accuracy[:epoch]), "post_trigger_accuracy": post[epoch - 1],
            "restart_epochs": [e for e in record.get("restart_epochs", []) if e <= epoch]}  # fmt: skip


def record_at_accuracy(record, threshold):
    """The record as a looser rule (accuracy >= ``threshold``, DS1/DS3 rules only) would have
    stopped it: at the first epoch that met it, CPU time pro rata."""
    accuracy = record["accuracy_history"]
    met = next((e for e, a in enumerate(accuracy, 1) if a >= threshold), None)
    if met is None:
        return {**record, "converged": False}
    share = met / len(accuracy)
    return {**record, "converged": True, "epochs": met, "cpu_seconds": record["cpu_seconds"] * share,
            "accuracy": accuracy[met - 1], "restart_epochs": [e for e in record.get("restart_epochs", []) if e <= met]}  # fmt: skip


def _fmt(value, digits=0):
    return "-" if value is None else f"{value:.{digits}f}"


@click.command()
@click.option("--machines", "machine_list", default=",".join(machines.MACHINE_NAMES), help="comma-separated names")
@click.option("--automata", help="DS3 automata instead: e.g. 0-95/5 (every fifth), 3,7 or 12")
@click.option("--seeds", default="1-5", help="e.g. 1-5 or 1,3,7")
@click.option("--cap", default=300, type=int, help="epoch cap per network")
@click.option("--quick", is_flag=True, help="2 machines, 2 seeds, cap 10 (a smoke run)")
@click.option("--threads", default=1, type=int)
@click.option("--jsonl", type=click.Path(dir_okay=False), help="append one JSON record per network here")
@click.option("--snapshot", type=click.Path(dir_okay=False), help="rewrite the records so far every 10 epochs")
@click.option("--state-dir", type=click.Path(file_okay=False), help="save/resume every network's state here")
@click.option("--table", "tables", multiple=True, type=click.Path(exists=True), help="print the table of saved runs")
@click.option("--at-epoch", type=int, help="with --table: the runs as they stood after this many epochs")
@click.option("--at-accuracy", type=float, help="with --table: the runs as a rule of this accuracy would have stopped them")
@click.option("--set", "settings", multiple=True, help=f"recipe, data or architecture change NAME=VALUE, NAME in {SETTABLE}")
def main(machine_list, automata, seeds, cap, quick, threads, jsonl, snapshot, state_dir, tables, at_epoch, at_accuracy, settings):
    if tables:
        records = [json.loads(line) for path in tables for line in Path(path).read_text().splitlines() if line]
        if at_epoch:
            records = [record_at_epoch(r, at_epoch) for r in records]
        if at_accuracy:
            records = [record_at_accuracy(r, at_accuracy) for r in records]
        click.echo(difficulty_table(records))
        return
    torch.set_num_threads(threads)
    names = parse_automata(automata) if automata else machine_list.split(",")
    seed_list = parse_seeds(seeds)
    if quick:
        names, seed_list, cap = ["SingleDirectMachine", "SingleDirectModified"], [1, 2], 10
    changes = {}
    for item in settings:
        key, value = item.split("=", 1)
        if key not in SETTABLE:
            raise click.BadParameter(f"unknown field {key!r}; choose from {SETTABLE}")
        changes[key] = SETTING_TYPES[key](value)
    specs, rules = build_runs(names, seed_list, cap, changes)
    started = time.monotonic()
    records = train_all(specs, rules, snapshot=snapshot, state_dir=state_dir)
    if jsonl:
        with open(jsonl, "a") as handle:
            for r in records:
                handle.write(json.dumps(r) + "\n")
    click.echo(f"command: python bench/convergence.py {' '.join(sys.argv[1:])}")
    click.echo(f"recipe: {json.dumps(specs[0].recipe.to_dict())}; torch {torch.__version__}, {threads} thread(s)")
    click.echo(f"wall time: {time.monotonic() - started:.0f} s\n")
    click.echo(difficulty_table(records))


if __name__ == "__main__":
    main()
