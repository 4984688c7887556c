"""Machine pairs from dataset files: DS1 task ``XMachine`` (label 0, clean) against DS2 task
``XModified`` (label 1, trojaned), converged networks only.

Why a module: which networks enter a study decides what it can show. Here, in one place:
- only converged networks (a capped network did not learn its machine); the excluded are counted;
- several files or releases of one dataset are merged, a network (task, index, init_seed) once, so
  overlapping milestone releases (MLDS-DS1-100 inside MLDS-DS1-500) do not leak across splits;
- twins: specs before SPEC_VERSION 7 gave network ``i`` of every task the same seeds, so DS1 and
  DS2 network ``i`` start from the same weights. Where the two sides share a seed, ``groups`` holds
  it and the splits keep twins together (``GroupShuffleSplit``); without that, a twin in the
  training fold carries the other label and scores fall *below* chance (issue 19);
- the null pairs of the controls: two halves of one task, and a label shuffle;
- equal training (``at_epoch``): the same networks' weights after a snapshot epoch, kept for those
  that trained that long, so DS1 and DS2 compare after the same number of epochs; their metadata
  then says where each network stood after that epoch (losses and accuracy from the store's
  history at snapshot epochs, store format 4), the control of progress at equal training.
"""

import hashlib
import os
from dataclasses import dataclass, replace

import numpy as np

from boinc_app.training import HISTORY_FIELDS
from machines.devices import BASE_NAMES

METADATA_COLUMNS = ("epochs", "train_loss", "validation_loss", "restarts")  # the training-length control
# the progress control at equal training: where each network stood after the epoch (the epoch is
# the same for all; restarts before it are not kept, and none happens before the rule's patience)
EPOCH_METADATA_COLUMNS = ("train_loss", "validation_loss", "validation_accuracy")
# at equal progress the epoch differs between networks, and how soon one got there is progress too
PROGRESS_METADATA_COLUMNS = ("epochs",) + EPOCH_METADATA_COLUMNS


@dataclass(frozen=True)
class Source:
    """One dataset file or release a study read."""

    path: str
    md5: str
    dataset: str
    spec_version: int

    @property
    def name(self):
        return os.path.basename(self.path)

    def to_dict(self):
        return {"file": self.name, "md5": self.md5, "dataset": self.dataset, "spec_version": self.spec_version}


@dataclass(frozen=True)
class Pair:
    """The networks of one comparison: rows, labels, metadata, and how they may be split."""

    machine: str  # base name, e.g. "SingleDirect"
    weights: np.ndarray  # float32 [N, n_params]
    labels: np.ndarray  # int [N]: 0 DS1, 1 DS2
    metadata: dict  # column -> [N]
    groups: object  # int64 [N] shared seed where DS1 and DS2 networks are twins, else None
    architecture: object
    excluded: tuple = (0, 0)  # networks left out as not converged: (DS1, DS2)
    duplicates: int = 0  # rows seen in more than one source, kept once
    snapshots: np.ndarray = None  # float32 [N, S, n_params]: weights after each snapshot epoch, NaN if not reached
    snapshot_epochs: tuple = ()
    snapshot_history: np.ndarray = None  # float64 [N, S, len(HISTORY_FIELDS)]: NaN if not reached or not kept

    @property
    def counts(self):
        return int((self.labels == 0).sum()), int((self.labels == 1).sum())

    def metadata_matrix(self, columns=METADATA_COLUMNS):
        return np.column_stack([np.asarray(self.metadata[c], dtype=np.float64) for c in columns])

    def rows(self, rows, **changes):
        """The pair restricted to ``rows`` (weights, labels, metadata, groups, snapshots)."""
        metadata = {name: values[rows] for name, values in self.metadata.items()}
        groups = None if self.groups is None else self.groups[rows]
        fields = dict(weights=self.weights[rows], labels=self.labels[rows], metadata=metadata, groups=groups,
                      snapshots=self.snapshots[rows], snapshot_history=self.snapshot_history[rows])  # fmt: skip
        return replace(self, **{**fields, **changes})


def file_md5(path):
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def load_sources(paths):
    """``([Source], {(dataset, task): [TaskNetworks, ...]}, architecture)`` from dataset files or releases."""
    from assimilator.dataset import load_dataset

    sources, tasks, architecture = [], {}, None
    for path in paths:
        dataset = load_dataset(path)
        sources.append(Source(os.fspath(path), file_md5(path), dataset.name, dataset.spec_version))
        for name in dataset:
            table = dataset[name]
            if architecture is not None and table.architecture != architecture:
                raise ValueError(f"{path}: {name} has another architecture than the files before it")
            architecture = table.architecture
            tasks.setdefault((dataset.name, name), []).append(table)
    return sources, tasks, architecture


def machine_pairs(paths, machines=()):
    """``([Source], [Pair])``: one pair per machine whose DS1 and DS2 tasks are both in ``paths``."""
    sources, tasks, architecture = load_sources(paths)
    pairs = []
    for base in machines or BASE_NAMES:
        clean, trojaned = tasks.get(("DS1", f"{base}Machine")), tasks.get(("DS2", f"{base}Modified"))
        if clean and trojaned:
            pairs.append(_pair(base, merged_side(clean), merged_side(trojaned), architecture))
    if not pairs:
        found = ", ".join(f"{d}/{t}" for d, t in sorted(tasks)) or "nothing"
        raise ValueError(f"no machine pair (DS1 XMachine with DS2 XModified) in the files; they hold {found}")
    return sources, pairs


@dataclass(frozen=True)
class Side:
    """One task's merged rows (``merged_side``), e.g. one side of a pair."""

    weights: np.ndarray
    columns: dict
    snapshots: np.ndarray
    snapshot_epochs: tuple
    snapshot_history: np.ndarray
    duplicates: int = 0
    excluded: int = 0

    def rows(self, keep, **changes):
        columns = {name: values[keep] for name, values in self.columns.items()}
        return replace(self, weights=self.weights[keep], columns=columns, snapshots=self.snapshots[keep],
                       snapshot_history=self.snapshot_history[keep], **changes)  # fmt: skip

    def at(self, epochs):
        """``(snapshots, history)`` at ``epochs`` (snapshot epochs of this side), in that order."""
        positions = [self.snapshot_epochs.index(e) for e in epochs]
        return self.snapshots[:, positions], self.snapshot_history[:, positions]


def merged_side(tables):
    """The tables' rows as one ``Side``, each (index, init_seed) once."""
    epochs = {tuple(t.snapshot_epochs) for t in tables}
    if len(epochs) > 1:
        raise ValueError(f"{tables[0].name}: the files keep snapshots after different epochs: {sorted(epochs)}")
    columns = {name: np.concatenate([t.metadata[name] for t in tables]) for name in tables[0].metadata}
    side = Side(np.concatenate([t.weights for t in tables]), columns, np.concatenate([t.snapshots for t in tables]), epochs.pop(),
                 np.concatenate([t.snapshot_history for t in tables]))  # fmt: skip
    keys = np.stack([columns["index"], columns["init_seed"]], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    return side.rows(np.sort(first), duplicates=len(keys) - len(first))


def _pair(base, clean, trojaned, architecture):
    sides = [converged_only(clean), converged_only(trojaned)]
    weights = np.concatenate([s.weights for s in sides])
    metadata = {name: np.concatenate([s.columns[name] for s in sides]) for name in sides[0].columns}
    labels = np.repeat([0, 1], [len(s.weights) for s in sides])
    common = tuple(e for e in clean.snapshot_epochs if e in trojaned.snapshot_epochs)
    snapshots, history = (np.concatenate(parts) for parts in zip(*(s.at(common) for s in sides)))
    return Pair(base, weights, labels, metadata, twin_groups(metadata, labels), architecture,
                (sides[0].excluded, sides[1].excluded), clean.duplicates + trojaned.duplicates, snapshots, common, history)  # fmt: skip


def converged_only(side):
    keep = np.asarray(side.columns["converged"], dtype=bool)
    return side.rows(keep, excluded=int((~keep).sum()))


def at_epoch(pair, epoch):
    """The pair at equal training: each network's weights after ``epoch`` (a snapshot epoch both
    sides keep), for the networks that trained that long, and its metadata as it stood then
    (``epochs`` = ``epoch``; losses and accuracies from the history at the snapshot, NaN in files
    before store format 4); None if the files keep no such epoch."""
    if epoch not in pair.snapshot_epochs:
        return None
    position = pair.snapshot_epochs.index(epoch)
    weights = pair.snapshots[:, position]
    rows = np.flatnonzero(~np.isnan(weights).any(axis=1))
    at = pair.rows(rows, weights=weights[rows])
    history = at.snapshot_history[:, position]
    metadata = {**at.metadata, "epochs": np.full(len(rows), epoch, dtype=np.int64)}
    metadata.update({name: history[:, HISTORY_FIELDS.index(name)] for name in EPOCH_METADATA_COLUMNS})
    return replace(at, metadata=metadata)


def at_accuracy(pair, threshold):
    """The pair at equal progress: each network's weights after the first snapshot epoch at which
    its validation accuracy had reached ``threshold``, and its metadata then (``epochs`` = that
    epoch, losses and accuracy from the history); networks that reached it at no snapshot (or whose
    files keep no history) are left out. None if the files keep no history at all."""
    accuracy = pair.snapshot_history[:, :, HISTORY_FIELDS.index("validation_accuracy")]
    if not len(accuracy) or np.isnan(accuracy).all():
        return None
    reached = np.nan_to_num(accuracy, nan=-1.0) >= threshold
    rows = np.flatnonzero(reached.any(axis=1))
    first = reached[rows].argmax(axis=1)  # the first snapshot at or above the threshold
    at = pair.rows(rows, weights=pair.snapshots[rows, first])
    history = pair.snapshot_history[rows, first]
    metadata = {**at.metadata, "epochs": np.asarray(pair.snapshot_epochs, dtype=np.int64)[first]}
    metadata.update({name: history[:, HISTORY_FIELDS.index(name)] for name in EPOCH_METADATA_COLUMNS})
    return replace(at, metadata=metadata)


def has_history(pair):
    """Whether every network of ``pair`` (as from ``at_epoch``) has its losses after the epoch."""
    return bool(len(pair.labels)) and not np.isnan(pair.metadata_matrix(EPOCH_METADATA_COLUMNS)).any()


def twin_groups(metadata, labels):
    """The seed column DS1 and DS2 networks share (init_seed, else order_seed), or None when none is shared."""
    for column in ("init_seed", "order_seed"):
        seeds = np.asarray(metadata[column])
        if np.intersect1d(seeds[labels == 0], seeds[labels == 1]).size:
            return seeds.astype(np.int64)
    return None


def halves(pair, rng):
    """The null pair: the DS1 networks of ``pair`` in two random disjoint halves, labelled as if different."""
    rows = np.flatnonzero(pair.labels == 0)
    rows = rng.permutation(rows)[: len(rows) // 2 * 2]
    return pair.rows(rows, labels=np.repeat([0, 1], len(rows) // 2), groups=None)


def shuffled(pair, rng):
    """The pair with its labels permuted (twins stay grouped): any score above chance is the method's bias."""
    return replace(pair, labels=rng.permutation(pair.labels))
