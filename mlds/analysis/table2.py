"""MLDS's Table 2, honestly: per machine pair, can the weights tell DS1 from DS2, beyond the controls?

Why the controls: issue 19 found that DS2 networks train 3-4 times longer than DS1 ones, so the
weight norm alone and the training metadata alone separate them; a Table 2 without those rows
measures training length, not the trigger. Beside the six classifiers on each weight feature set
(``mlds.analysis.features``) every pair gets:
- ``metadata``: the same classifiers on epochs, final losses and restarts only;
- ``norm``: the same classifiers on the weight norm alone;
- ``shuffled``: on the first weight feature set with the labels permuted;
- ``halves``: on the first weight feature set, two disjoint halves of the DS1 networks labelled as
  if different.
The last two must come out at chance; as every row reports the *best* of six classifiers, their
best is the chance ceiling that a weight row must clear. At equal training, for each snapshot epoch
``e`` the files keep (``pairs.at_epoch``): ``<features>@e``, each weight feature set on every
network's weights after epoch ``e``, ``norm@e``, their norm alone, ``metadata@e``, the losses
and validation accuracy after epoch ``e`` (where the files keep them, store format 4): equal epochs
are not equal progress, and a weights row that does not beat ``metadata@e`` may only be reading how
far each network had come; and ``halves@e``, the null pair at that epoch (with ``halves``). Only
networks that trained ``e`` epochs have them, so at a late ``e`` the fast learners are gone (the
counts are reported). Equal epochs are still not equal progress (after epoch 2 a DS1 network has
nearly solved its task, a DS2 one has not), so the pair is also compared **at equal progress**
(``pairs.at_accuracy``): for each threshold T, every network's weights at the first snapshot where
its validation accuracy had reached T (``<features>@accT``, ``norm@accT``), against ``metadata@accT``,
that snapshot's epoch, losses and accuracy. The Trojan-detection view is the ROC AUC of the
best weight-only detector (the best mean accuracy over weight feature sets and classifiers).
"""

import time
from dataclasses import asdict, dataclass

import numpy as np

from mlds.analysis import pairs as pairs_module
from mlds.analysis.classifiers import CLASSIFIERS, evaluate, splits
from mlds.analysis.features import feature_matrix

CONTROLS = ("metadata", "norm", "shuffled", "halves")
WEIGHT_FEATURES = ("raw", "invariant", "canonical")
MIN_PER_CLASS = 10  # converged networks per side below which a pair is reported as skipped
# equal-training epochs tried by default: where DS1 (2-4 epochs) and DS2 (11-13) networks both train
EQUAL_EPOCHS = (1, 2, 3, 4, 5, 10)
# equal-progress thresholds of validation accuracy tried by default (``pairs.at_accuracy``)
EQUAL_ACCURACIES = (0.9, 0.99)


@dataclass(frozen=True)
class Table2Config:
    datasets: tuple  # dataset files or releases (DS1 and DS2)
    seeds: int = 5  # 80/20 splits, each with its own seed
    test_size: float = 0.2
    features: tuple = ("raw", "invariant")  # weight feature sets (WEIGHT_FEATURES)
    classifiers: tuple = CLASSIFIERS
    controls: tuple = CONTROLS
    machines: tuple = ()  # base names (SingleDirect, ...); empty: every pair in the files
    equal_epochs: tuple = EQUAL_EPOCHS  # snapshot epochs compared at equal training (those the files keep)
    equal_accuracies: tuple = EQUAL_ACCURACIES  # validation accuracies compared at equal progress
    out: str = ""  # Markdown file to write (JSON beside it, .json); empty: none

    def __post_init__(self):
        if self.seeds < 2:
            raise ValueError("--seeds: at least 2 splits, for a spread")
        unknown = set(self.features) - set(WEIGHT_FEATURES) or set(self.controls) - set(CONTROLS)
        if unknown:
            raise ValueError(f"unknown feature set or control: {', '.join(sorted(unknown))}")
        if not self.features:
            raise ValueError("at least one weight feature set")


def run_table2(config):
    """The study as a JSON-able dict: sources, settings, and per pair every classifier's scores."""
    started = time.monotonic()
    sources, machine_pairs = pairs_module.machine_pairs(config.datasets, config.machines)
    skipped = [_skip_note(p) for p in machine_pairs if min(p.counts) < MIN_PER_CLASS]
    results = [study_pair(p, config) for p in machine_pairs if min(p.counts) >= MIN_PER_CLASS]
    if not results:
        raise ValueError("no pair has enough converged networks: " + "; ".join(skipped))
    return {
        "study": "table2",
        "config": {**asdict(config), "datasets": [s.name for s in sources]},
        "sources": [s.to_dict() for s in sources],
        "pairs": results,
        "skipped": skipped,
        "seconds": round(time.monotonic() - started, 1),
    }


def _skip_note(pair):
    return (f"{pair.machine}: {pair.counts[0]} / {pair.counts[1]} converged networks "
            f"({pair.excluded[0]} / {pair.excluded[1]} not converged), fewer than {MIN_PER_CLASS} per side")  # fmt: skip


def study_pair(pair, config):
    """One machine pair: ``{machine, counts, split, rows: {row: {classifier: scores}}, best}``."""
    rows = {name: _weights_row(pair, name, config) for name in config.features}
    for control in config.controls:
        rows[control] = _control_row(pair, control, config)
    equal = {}
    for epoch in config.equal_epochs:
        at = pairs_module.at_epoch(pair, epoch)
        if at is None:
            continue
        history = pairs_module.has_history(at)
        equal[str(epoch)] = {"DS1": at.counts[0], "DS2": at.counts[1], "all": at.counts == pair.counts, "history": history}
        if min(at.counts) >= MIN_PER_CLASS:
            for name in config.features:
                rows[f"{name}@{epoch}"] = _weights_row(at, name, config)
            rows[f"norm@{epoch}"] = _weights_row(at, "norm", config)
            if history:
                rows[f"metadata@{epoch}"] = _evaluate(at.metadata_matrix(pairs_module.EPOCH_METADATA_COLUMNS), at, config)
            if "halves" in config.controls and at.counts[0] >= 2 * MIN_PER_CLASS:
                rows[f"halves@{epoch}"] = _control_row(at, "halves", config)
    progress = {}
    for threshold in config.equal_accuracies:
        at = pairs_module.at_accuracy(pair, threshold)
        if at is None:
            continue
        key = f"acc{threshold:g}"
        progress[key] = {"DS1": at.counts[0], "DS2": at.counts[1], "epochs": _epoch_ranges(at)}
        if min(at.counts) >= MIN_PER_CLASS:
            for name in config.features:
                rows[f"{name}@{key}"] = _weights_row(at, name, config)
            rows[f"norm@{key}"] = _weights_row(at, "norm", config)
            rows[f"metadata@{key}"] = _evaluate(at.metadata_matrix(pairs_module.PROGRESS_METADATA_COLUMNS), at, config)
    return {
        "machine": pair.machine,
        "networks": {"DS1": pair.counts[0], "DS2": pair.counts[1]},
        "excluded_unconverged": {"DS1": pair.excluded[0], "DS2": pair.excluded[1]},
        "duplicates_dropped": pair.duplicates,
        "split": "grouped by shared seed (GroupShuffleSplit)" if pair.groups is not None else "stratified",
        "equal_training_networks": equal,  # per snapshot epoch: networks that trained that long
        "equal_progress_networks": progress,  # per accuracy threshold: networks that reached it at a snapshot
        "rows": {name: {c: s.to_dict() for c, s in scores.items()} for name, scores in rows.items()},
        "best_weight_detector": best_detector(rows, config.features),
    }


def _epoch_ranges(pair):
    """``{"DS1": [min, median, max], "DS2": ...}`` of the snapshot epochs a pair's networks stand at."""
    epochs = np.asarray(pair.metadata["epochs"])
    return {side: [int(np.min(e)), float(np.median(e)), int(np.max(e))] if len(e) else []
            for side, e in (("DS1", epochs[pair.labels == 0]), ("DS2", epochs[pair.labels == 1]))}  # fmt: skip


def _weights_row(pair, feature_set, config):
    return _evaluate(feature_matrix(feature_set, pair.weights, pair.architecture), pair, config)


def _evaluate(features, pair, config):
    return evaluate(features, pair.labels, splits(pair.labels, pair.groups, config.seeds, config.test_size), config.classifiers)


def _control_row(pair, control, config):
    rng = np.random.default_rng(2019)  # fixed: the controls are part of the recorded study
    if control == "metadata":
        features = pair.metadata_matrix()
    elif control == "norm":
        features = feature_matrix("norm", pair.weights, pair.architecture)
    else:
        pair = pairs_module.shuffled(pair, rng) if control == "shuffled" else pairs_module.halves(pair, rng)
        features = feature_matrix(config.features[0], pair.weights, pair.architecture)
    return _evaluate(features, pair, config)


def best_detector(rows, feature_sets):
    """The weight-only (feature set, classifier) with the best mean accuracy, with its AUC."""
    candidates = [(scores.mean, name, classifier, scores) for name in feature_sets for classifier, scores in rows[name].items()]
    mean, name, classifier, scores = max(candidates, key=lambda c: c[0])
    return {"features": name, "classifier": classifier, **scores.to_dict()}


def best_of(row):
    """``(classifier, scores dict)`` with the best mean accuracy in one row of a pair's results."""
    return max(row.items(), key=lambda item: item[1]["mean"])
