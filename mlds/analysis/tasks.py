"""Which task trained this network? The weights' multi-class view, with controls.

Why: MLDS's DS3 figure (a UMAP of weights coloured by automaton) and our own DS1/DS2 figures are
read by eye, and a projection of a few hundred points can show structure that is not there or hide
structure that is. A classifier that names each network's task from its weights, on held-out
networks, turns "the automata cluster" into a number, and the same controls as Table 2 say what
that number is worth:
- ``metadata``: epochs, final losses and restarts alone (tasks differ in how long they train);
- ``norm``: the weight norm alone;
- ``shuffled``: the first weight feature set with the task labels permuted (chance, by construction;
  its best classifier is the ceiling luck reaches).
Chance is the largest task's share of the networks (1/K for K equal tasks). With ``epoch`` the
weights (and metadata) are those after that snapshot epoch, for the networks that trained that long,
so tasks compare at equal training as in Table 2. Converged networks only; a network is counted
once however many files hold it (``pairs.merged_side``); tasks with fewer than ``min_networks``
are left out and said so.
"""

import time
from dataclasses import asdict, dataclass

import numpy as np

from boinc_app.training import HISTORY_FIELDS
from mlds.analysis import pairs
from mlds.analysis.classifiers import CLASSIFIERS, evaluate, fitted_models, splits
from mlds.analysis.features import feature_matrix

TASK_CONTROLS = ("metadata", "norm", "shuffled")


@dataclass(frozen=True)
class TasksConfig:
    datasets: tuple  # dataset files or releases
    seeds: int = 5  # 80/20 stratified splits, each with its own seed
    test_size: float = 0.2
    features: tuple = ("raw", "invariant")
    classifiers: tuple = CLASSIFIERS
    controls: tuple = TASK_CONTROLS
    epoch: int = 0  # 0: final weights; else the weights after this snapshot epoch
    min_networks: int = 10  # converged networks a task needs to take part
    out: str = ""  # Markdown file to write (JSON beside it); empty: none

    def __post_init__(self):
        if self.seeds < 2:
            raise ValueError("--seeds: at least 2 splits, for a spread")
        unknown = set(self.controls) - set(TASK_CONTROLS)
        if unknown:
            raise ValueError(f"unknown control: {', '.join(sorted(unknown))}; known: {', '.join(TASK_CONTROLS)}")
        if not self.features:
            raise ValueError("at least one weight feature set")


@dataclass(frozen=True)
class Networks:
    """The networks of a tasks study: weight rows, metadata rows, and each network's task number."""

    weights: np.ndarray
    metadata: np.ndarray  # [N, len(columns)]
    labels: np.ndarray
    names: tuple  # task number -> "DS1/ParityMachine"
    architecture: object


def load_networks(config):
    """``(sources, Networks, notes)``: converged networks of every task with enough of them."""
    sources, tables, architecture = pairs.load_sources(config.datasets)
    parts, names, notes = [], [], []
    for (dataset, task), found in sorted(tables.items()):
        side = pairs.converged_only(pairs.merged_side(found))
        weights, metadata = _at(side, config.epoch)
        if len(weights) < config.min_networks:
            notes.append(f"{dataset}/{task}: {len(weights)} networks, fewer than {config.min_networks}")
            continue
        parts.append((weights, metadata))
        names.append(f"{dataset}/{task}")
    if len(names) < 2:
        raise ValueError("a tasks study needs two tasks with enough converged networks; " + ("; ".join(notes) or "found fewer"))
    labels = np.concatenate([np.full(len(w), k) for k, (w, _) in enumerate(parts)])
    weights, metadata = (np.concatenate(columns) for columns in zip(*parts))
    return sources, Networks(weights, metadata, labels, tuple(names), architecture), notes


def _at(side, epoch):
    """``(weights, metadata matrix)`` of a side: final, or after snapshot ``epoch`` (NaN rows dropped)."""
    if not epoch:
        return side.weights, np.column_stack([np.asarray(side.columns[c], dtype=np.float64) for c in pairs.METADATA_COLUMNS])
    if epoch not in side.snapshot_epochs:
        raise ValueError(f"the files keep weights after epochs {list(side.snapshot_epochs)}, not {epoch}")
    snapshots, history = side.at((epoch,))
    reached = ~np.isnan(snapshots[:, 0]).any(axis=1)
    metadata = history[reached, 0][:, [HISTORY_FIELDS.index(c) for c in pairs.EPOCH_METADATA_COLUMNS]]
    return snapshots[reached, 0], metadata


def run_tasks(config):
    """The study as a JSON-able dict: sources, tasks and counts, chance, and every row's scores."""
    started = time.monotonic()
    sources, networks, notes = load_networks(config)
    fold_list = splits(networks.labels, None, config.seeds, config.test_size)
    features = {name: feature_matrix(name, networks.weights, networks.architecture) for name in config.features}
    rows = {name: evaluate(matrix, networks.labels, fold_list, config.classifiers) for name, matrix in features.items()}
    for control in config.controls:
        rows[control] = _control_row(networks, control, config, fold_list, features[config.features[0]])
    best_name, best_classifier = max(((n, c) for n in config.features for c in rows[n]), key=lambda nc: rows[nc[0]][nc[1]].mean)
    counts = np.bincount(networks.labels)
    return {
        "study": "tasks",
        "config": {**asdict(config), "datasets": [s.name for s in sources]},
        "sources": [s.to_dict() for s in sources],
        "tasks": {name: int(count) for name, count in zip(networks.names, counts)},
        "chance": float(counts.max() / counts.sum()),
        "metadata_rows": "final" if not config.epoch else f"after epoch {config.epoch}: {', '.join(pairs.EPOCH_METADATA_COLUMNS)}",
        "skipped": notes,
        "rows": {name: {c: s.to_dict() for c, s in scores.items()} for name, scores in rows.items()},
        "best": {"features": best_name, "classifier": best_classifier,
                 "confusion": confusion(networks, features[best_name], best_classifier, fold_list).tolist()},  # fmt: skip
        "seconds": round(time.monotonic() - started, 1),
    }


def _control_row(networks, control, config, fold_list, first_features):
    if control == "metadata":
        features, labels = networks.metadata, networks.labels
    elif control == "norm":
        features, labels = feature_matrix("norm", networks.weights, networks.architecture), networks.labels
    else:
        rng = np.random.default_rng(2019)  # fixed: the control is part of the recorded study
        features = first_features
        labels = rng.permutation(networks.labels)
    return evaluate(features, labels, fold_list, config.classifiers)


def confusion(networks, features, classifier, fold_list):
    """``[K, K]`` counts over every split's test fold of ``classifier`` on ``features``: row = true
    task, column = predicted."""
    counts = np.zeros((len(networks.names),) * 2, dtype=np.int64)
    for model, test in fitted_models(classifier, features, networks.labels, fold_list):
        np.add.at(counts, (networks.labels[test], model.predict(features[test])), 1)
    return counts
