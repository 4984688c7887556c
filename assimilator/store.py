"""The dataset store: every finished network of a dataset, as one weight matrix per machine.

Layout of a store file (``format_version`` 4; releases use the same layout; version 1 files, which
lack the ``restarts`` and ``last_restart_epoch`` columns, are read with zeros there, versions 1
and 2, which lack snapshots, with none, and version 3, which lacks ``snapshot_history``, with NaN
there)::

    /                         attrs: format, format_version, dataset, spec_version,
                                     architecture (JSON), parameter_layout (JSON [[key, shape], ...]),
                                     snapshot_epochs (JSON [e1, e2, ...], the dataset's),
                                     snapshot_history_fields (JSON [name, ...]: ``HISTORY_FIELDS``)
    /<task>/weights           float32 [N, n_params]: row i is network i's state_dict tensors,
                              flattened in ``parameter_layout`` order and concatenated
    /<task>/snapshots         float32 [N, S, n_params]: network i's weights after each of the S
                              snapshot epochs, NaN where it stopped training before that epoch
    /<task>/snapshot_history  float64 [N, S, H]: network i's training history (losses, accuracies,
                              learning rate) after each snapshot epoch, NaN where it has no snapshot
    /<task>/networks/<column> [N] one dataset per metadata column (``COLUMNS``), rows sorted by index

``<task>`` is the machine name (DS1/DS2) or ``automaton-NNN`` (DS3).

Memory: a full DS3 is 100 automata x 10,000 networks x 122,310 float32 weights, 489 GB, so nothing
on the server side loads a whole store. Consolidation reads the index columns, plans the merged
order, and copies weight rows in blocks of at most ``BLOCK_BYTES`` (``copy_rows``); progress and
milestones read metadata columns only (``DatasetStore.columns``). ``DatasetStore.read`` loads
everything and is for tests and small stores.

Why the history at snapshot epochs (version 4): weights after epoch ``e`` compare networks at equal
training, but two networks at the same epoch can still be at different points of their task. The
losses after ``e`` are the control that tells whether the weights carry more than that progress
(issue 19), and a result's per-epoch history holds them, so the store keeps the rows at the
snapshot epochs: 5 float64 per snapshot beside 4,364 float32 weights.

Why a journal: HDF5 files are not safe to modify in place when a process can be killed at any
moment, and rewriting a whole dataset for every result would cost O(N) per result. So ingesting a
result writes one small store file, ``<dataset>.journal/<workunit>.h5``, atomically; consolidation
merges the journal into ``<dataset>.h5`` by writing a new file and renaming it over the old one, and
only then deletes the merged journal files. Networks are identified by ``(task, index)`` and a
network is stored once: a key already present is skipped, so ingesting a result twice, or a crash
between the rename and the deletions, never duplicates anything. A network's stored row never
changes (a finished network is not trained again), so which copy wins does not matter.
"""

import json
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from boinc_app.atomic_file import replace_atomically
from boinc_app.networks import Architecture, flatten_tensors, parameter_layout
from boinc_app.training import CONVERGED, HISTORY_FIELDS, TRAINING

STORE_FORMAT = "mlds-dataset-store"
BLOCK_BYTES = 64 << 20  # weight rows copied at once by consolidation and releases
STORE_FORMAT_VERSION = 4
READABLE_STORE_VERSIONS = (1, 2, 3, 4)  # 3: snapshots; 4: history at snapshot epochs

ADDED_IN_VERSION = {"restarts": 2, "last_restart_epoch": 2}  # columns older files lack (read as 0)
# metadata column -> numpy dtype ("str" columns are variable-length UTF-8 strings in the file)
COLUMNS = {
    "index": np.int64,
    "key": str,
    "init_seed": np.int64,
    "order_seed": np.int64,
    "converged": np.bool_,
    "status": str,
    "epochs": np.int64,
    # times the restart rule re-initialised the network, and after which epoch it last did: the
    # stored weights grew from seed training.restart_seed(init_seed, restarts) (init_seed if 0)
    "restarts": np.int64,
    "last_restart_epoch": np.int64,
    "train_loss": np.float64,
    "validation_loss": np.float64,
    "validation_accuracy": np.float64,
    "best_validation_accuracy": np.float64,
    "post_trigger_accuracy": np.float64,
    "cpu_seconds": np.float64,
    "workunit": str,
    "spec_sha256": str,
    "app_version": str,
    "torch_version": str,
    "platform": str,
    "device": str,
}


class StoreError(ValueError):
    """A store file or an ingest that cannot be used; the message says why."""


@dataclass(frozen=True)
class StoreHeader:
    dataset: str
    spec_version: int
    architecture: Architecture
    snapshot_epochs: tuple = ()  # the epochs every network's weights are kept after (spec's)
    # the version of the file it was read from (what a header written now gets by default);
    # not part of a header's identity: files of both versions hold the same dataset
    format_version: int = field(default=STORE_FORMAT_VERSION, compare=False)

    @property
    def layout(self):
        return parameter_layout(self.architecture)

    @property
    def n_params(self):
        return sum(int(np.prod(shape)) for _, shape in self.layout)


@dataclass
class TaskTable:
    """One task's networks: ``weights [N, n_params]``, ``snapshots [N, S, n_params]``,
    ``snapshot_history [N, S, len(HISTORY_FIELDS)]`` and ``columns {name: array [N]}``."""

    weights: np.ndarray
    columns: dict
    snapshots: np.ndarray = None  # None: no snapshot epochs ([N, 0, n_params])
    snapshot_history: np.ndarray = None  # None: unknown (NaN), as in files before version 4

    def __post_init__(self):
        if self.snapshots is None:
            self.snapshots = np.zeros((self.weights.shape[0], 0, self.weights.shape[1]), dtype=np.float32)
        if self.snapshot_history is None:
            self.snapshot_history = unknown_history(self.snapshots.shape[0], self.snapshots.shape[1])

    def __len__(self):
        return self.weights.shape[0]

    @property
    def indices(self):
        return self.columns["index"]

    def take(self, rows):
        columns = {name: values[rows] for name, values in self.columns.items()}
        return TaskTable(self.weights[rows], columns, self.snapshots[rows], self.snapshot_history[rows])


def unknown_history(rows, epochs):
    """``[rows, epochs, len(HISTORY_FIELDS)]`` of NaN: no history kept at those snapshots."""
    return np.full((rows, epochs, len(HISTORY_FIELDS)), np.nan, dtype=np.float64)


def network_index(key):
    """``net-000123`` -> 123 (the work generator's network keys)."""
    prefix, _, number = key.partition("-")
    if prefix != "net" or not number.isdigit():
        raise StoreError(f"network key {key!r} is not of the form net-NNNNNN")
    return int(number)


def finished_rows(spec, state, attrs, header):
    """``(task, TaskTable)`` of the networks in a result that are finished (converged or capped)."""
    from boinc_app.workunit_spec import task_label

    done = [n for n in state.networks if n.status != TRAINING]
    rows = [_row(n, spec, attrs) for n in done]
    weights = np.stack([flatten_tensors(n.weights, header.layout) for n in done]) if done else None
    snapshots = np.stack([snapshot_rows(n, header) for n in done]) if done else None
    history = np.stack([snapshot_history_rows(n, header) for n in done]) if done else None
    return task_label(spec.task), _table(rows, weights, snapshots, history, header)


def snapshot_rows(network, header):
    """``[S, n_params]``: the network's snapshots at the header's epochs, NaN where it has none."""
    rows = np.full((len(header.snapshot_epochs), header.n_params), np.nan, dtype=np.float32)
    for i, epoch in enumerate(header.snapshot_epochs):
        if epoch in network.snapshots:
            rows[i] = network.snapshots[epoch]
    return rows


def snapshot_history_rows(network, header):
    """``[S, len(HISTORY_FIELDS)]``: the network's history after each snapshot epoch it has a
    snapshot of (history index ``epoch - 1``; restarts do not reset the epoch count), NaN elsewhere."""
    rows = unknown_history(1, len(header.snapshot_epochs))[0]
    for i, epoch in enumerate(header.snapshot_epochs):
        if epoch in network.snapshots:
            rows[i] = [network.history[name][epoch - 1] for name in HISTORY_FIELDS]
    return rows


def _row(network, spec, attrs):
    history = network.history
    return {
        "index": network_index(network.key),
        "key": network.key,
        "init_seed": network.init_seed,
        "order_seed": network.order_seed,
        "converged": network.status == CONVERGED,
        "status": network.status,
        "epochs": network.epochs,
        "restarts": len(network.restart_epochs),
        "last_restart_epoch": network.restart_epochs[-1] if network.restart_epochs else 0,
        "train_loss": history["train_loss"][-1],
        "validation_loss": history["validation_loss"][-1],
        "validation_accuracy": history["validation_accuracy"][-1],
        "best_validation_accuracy": max(history["validation_accuracy"]),
        "post_trigger_accuracy": history["post_trigger_accuracy"][-1],
        "cpu_seconds": network.cpu_seconds,
        "workunit": spec.name,
        "spec_sha256": str(attrs["spec_sha256"]),
        "app_version": str(attrs["app_version"]),
        "torch_version": str(attrs["torch_version"]),
        "platform": str(attrs["platform"]),
        "device": str(attrs["device"]),
    }


def _table(rows, weights, snapshots, history, header):
    if not rows:
        return empty_table(header)
    columns = {name: np.array([row[name] for row in rows], dtype=_numpy_dtype(kind)) for name, kind in COLUMNS.items()}
    return TaskTable(np.asarray(weights, dtype=np.float32), columns, np.asarray(snapshots, dtype=np.float32),
                     np.asarray(history, dtype=np.float64))  # fmt: skip


def empty_table(header):
    columns = {name: np.zeros(0, dtype=_numpy_dtype(kind)) for name, kind in COLUMNS.items()}
    snapshots = np.zeros((0, len(header.snapshot_epochs), header.n_params), dtype=np.float32)
    return TaskTable(np.zeros((0, header.n_params), dtype=np.float32), columns, snapshots)


def _numpy_dtype(kind):
    return object if kind is str else kind


def merge_tables(tables, header):
    """One table from several, each ``(task, index)`` once (the first wins), sorted by index."""
    parts = [t for t in tables if len(t)]
    if not parts:
        return empty_table(header)
    merged = TaskTable(
        np.concatenate([t.weights for t in parts]),
        {name: np.concatenate([t.columns[name] for t in parts]) for name in COLUMNS},
        np.concatenate([t.snapshots for t in parts]),
        np.concatenate([t.snapshot_history for t in parts]),
    )
    _, first = np.unique(merged.indices, return_index=True)  # sorted unique indices, first occurrence
    return merged.take(first)


def write_store_file(path, header, tables):
    """Write ``{task: TaskTable}`` as a store file, atomically."""
    with replace_atomically(path) as temporary:
        _write_store(temporary, header, tables)


def _write_store(target, header, tables):
    with h5py.File(target, "w") as f:
        _write_header(f, header)
        for task in sorted(tables):
            _write_task(f.create_group(task, track_order=False), tables[task])


def _write_header(f, header):
    f.attrs["format"] = STORE_FORMAT
    f.attrs["format_version"] = STORE_FORMAT_VERSION
    f.attrs["dataset"] = header.dataset
    f.attrs["spec_version"] = header.spec_version
    f.attrs["architecture"] = json.dumps(header.architecture.to_dict())
    f.attrs["parameter_layout"] = json.dumps([[key, list(shape)] for key, shape in header.layout])
    f.attrs["snapshot_epochs"] = json.dumps(list(header.snapshot_epochs))
    f.attrs["snapshot_history_fields"] = json.dumps(list(HISTORY_FIELDS))


def _write_task(group, table):
    group.create_dataset("weights", data=table.weights, dtype=np.float32, track_times=False)
    group.create_dataset("snapshots", data=table.snapshots, dtype=np.float32, track_times=False, **_snapshot_storage(table.snapshots.shape))
    group.create_dataset("snapshot_history", data=table.snapshot_history, dtype=np.float64, track_times=False)
    _write_columns(group, table.columns)


def _write_columns(group, table_columns):
    columns = group.create_group("networks")
    for name, kind in COLUMNS.items():
        values = table_columns[name]
        if kind is str:
            data, dtype = [str(v) for v in values], h5py.string_dtype()
        else:
            data, dtype = np.asarray(values, dtype=kind), None
        columns.create_dataset(name, data=data, dtype=dtype, track_times=False)


def read_store_file(source):
    """``(StoreHeader, {task: TaskTable})`` from a path or binary file object; refuses unknown formats."""
    return _read_each_task(source, _read_task)


def _read_each_task(source, read_task):
    """``(StoreHeader, {task: read_task(file, task, header)})``; every failure is a ``StoreError``."""
    try:
        with h5py.File(source, "r", locking=False) as f:
            header = _read_header(f.attrs)
            return header, {task: read_task(f, task, header) for task in f.keys()}
    except StoreError:
        raise
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"unreadable dataset file: {type(exc).__name__}: {exc}") from None


def _read_header(attrs):
    if attrs.get("format") != STORE_FORMAT:
        raise StoreError(f"not an mlds dataset file (format {attrs.get('format')!r})")
    version = int(attrs.get("format_version", -1))
    if version not in READABLE_STORE_VERSIONS:
        raise StoreError(
            f"dataset format_version {version} is not known to this mlds (it reads {READABLE_STORE_VERSIONS}); upgrade mlds"
        )
    architecture = Architecture.from_dict(json.loads(attrs["architecture"]))
    snapshot_epochs = tuple(int(e) for e in json.loads(attrs["snapshot_epochs"])) if version >= 3 else ()
    header = StoreHeader(str(attrs["dataset"]), int(attrs["spec_version"]), architecture, snapshot_epochs, version)
    stored_layout = [(key, tuple(shape)) for key, shape in json.loads(attrs["parameter_layout"])]
    if stored_layout != header.layout:
        raise StoreError("the file's parameter layout does not match its architecture")
    if version >= 4 and json.loads(attrs["snapshot_history_fields"]) != list(HISTORY_FIELDS):
        raise StoreError(f"the file's snapshot_history_fields {attrs['snapshot_history_fields']} are not {list(HISTORY_FIELDS)}")
    return header


def _snapshot_storage(shape):
    """Chunked by network and epoch, gzip level 1: most snapshot rows of most networks are NaN (the
    network stopped before that epoch) and compress to almost nothing. The store is written by the
    server, not a volunteer, so its filters are not an attack (results refuse them)."""
    if 0 in shape:
        return {}
    return {"chunks": (min(shape[0], 16), 1, shape[2]), "compression": "gzip", "compression_opts": 1}


def _read_task(f, task, header):
    weights = np.asarray(_weights_dataset(f, task, header)[()], dtype=np.float32)
    snapshots = np.asarray(_snapshots_dataset(f, task, header, weights.shape[0])[()], dtype=np.float32)
    history = np.asarray(_snapshot_history_dataset(f, task, header, weights.shape[0])[()], dtype=np.float64)
    return TaskTable(weights, _read_columns(f, task, header), snapshots, history)


def _snapshots_dataset(f, task, header, rows):
    """The task's snapshots (an empty ``[rows, 0, n_params]`` array in files before version 3)."""
    expected = (rows, len(header.snapshot_epochs), header.n_params)
    if header.format_version < 3:
        return np.zeros(expected, dtype=np.float32)
    snapshots = f[task]["snapshots"]
    if snapshots.shape != expected:
        raise StoreError(f"{task}/snapshots has shape {snapshots.shape}, expected {expected}")
    return snapshots


def _snapshot_history_dataset(f, task, header, rows):
    """The task's history at snapshot epochs (NaN in files before version 4, which lack it)."""
    expected = (rows, len(header.snapshot_epochs), len(HISTORY_FIELDS))
    if header.format_version < 4:
        return unknown_history(rows, expected[1])
    history = f[task]["snapshot_history"]
    if history.shape != expected:
        raise StoreError(f"{task}/snapshot_history has shape {history.shape}, expected {expected}")
    return history


def _weights_dataset(f, task, header):
    weights = f[task]["weights"]
    if weights.ndim != 2 or weights.shape[1] != header.n_params:
        raise StoreError(f"{task}/weights has shape {weights.shape}, expected (N, {header.n_params})")
    return weights


def _read_columns(f, task, header):
    rows = _weights_dataset(f, task, header).shape[0]
    columns = {}
    for name, kind in COLUMNS.items():
        if header.format_version < ADDED_IN_VERSION.get(name, 1):
            columns[name] = np.zeros(rows, dtype=kind)
            continue
        values = f[task]["networks"][name]
        data = values.asstr()[()] if kind is str else values[()]
        columns[name] = np.asarray(data, dtype=_numpy_dtype(kind))
        if columns[name].shape != (rows,):
            raise StoreError(f"{task}/networks/{name} has {columns[name].shape[0]} rows, weights have {rows}")
    return columns


def read_store_columns(source):
    """``(StoreHeader, {task: columns})``: every metadata column, no weights."""
    return _read_each_task(source, _read_columns)


def rows_per_block(header, block_bytes=BLOCK_BYTES):
    """Networks copied at once: their weights and snapshots fit in ``block_bytes``."""
    return max(1, block_bytes // (4 * header.n_params * (1 + len(header.snapshot_epochs))))


def copy_rows(target, header, plans, block_bytes=BLOCK_BYTES):
    """Write a store file to ``target`` whose task ``t`` holds, in order, the rows
    ``plans[t] = [(source path, row), ...]``, copying weights in blocks (bounded memory).
    Within one source the planned rows must be increasing (store files are sorted by index)."""
    with h5py.File(target, "w") as out:
        _write_header(out, header)
        for task in sorted(plans):
            plan, source_columns = plans[task], {}
            group = out.create_group(task, track_order=False)
            weights = group.create_dataset("weights", shape=(len(plan), header.n_params), dtype=np.float32, track_times=False)
            snapshot_shape = (len(plan), len(header.snapshot_epochs), header.n_params)
            snapshots = group.create_dataset("snapshots", shape=snapshot_shape, dtype=np.float32, track_times=False,
                                             **_snapshot_storage(snapshot_shape))  # fmt: skip
            history = group.create_dataset("snapshot_history", shape=(*snapshot_shape[:2], len(HISTORY_FIELDS)),
                                           dtype=np.float64, track_times=False)  # fmt: skip
            step = rows_per_block(header, block_bytes)
            for start in range(0, len(plan), step):
                block = plan[start : start + step]
                rows, snapshot_rows_, history_rows = _gather_rows(block, task, header, source_columns)
                weights[start : start + len(block)] = rows
                if snapshot_shape[1]:
                    snapshots[start : start + len(block)] = snapshot_rows_
                    history[start : start + len(block)] = history_rows
            columns = {name: np.asarray([source_columns[source][name][row] for source, row in plan], dtype=_numpy_dtype(kind))
                       for name, kind in COLUMNS.items()}  # fmt: skip
            _write_columns(group, columns)


def _gather_rows(block, task, header, source_columns):
    """The weight, snapshot and snapshot-history rows of ``block``; reads each source's metadata
    columns once into ``source_columns``."""
    out = np.empty((len(block), header.n_params), dtype=np.float32)
    out_snapshots = np.empty((len(block), len(header.snapshot_epochs), header.n_params), dtype=np.float32)
    out_history = unknown_history(len(block), len(header.snapshot_epochs))
    by_source = {}
    for position, (source, row) in enumerate(block):
        by_source.setdefault(source, []).append((row, position))
    for source, pairs in by_source.items():
        rows = [row for row, _ in pairs]
        if rows != sorted(set(rows)):
            raise StoreError(f"{source}: rows of {task} are not sorted by network index")
        with h5py.File(source, "r", locking=False) as f:
            if source not in source_columns:
                source_columns[source] = _read_columns(f, task, _read_header(f.attrs))
            positions = [position for _, position in pairs]
            out[positions] = _weights_dataset(f, task, header)[rows]
            if out_snapshots.shape[1]:
                file_header, stored = _read_header(f.attrs), f[task]["weights"].shape[0]
                out_snapshots[positions] = _snapshots_dataset(f, task, file_header, stored)[rows]
                out_history[positions] = _snapshot_history_dataset(f, task, file_header, stored)[rows]
    return out, out_snapshots, out_history


def header_of(spec):
    return StoreHeader(spec.dataset, int(spec.spec_version), spec.architecture, tuple(spec.snapshot_epochs))


class DatasetStore:
    """One dataset's store under ``root``: ``<dataset>.h5`` plus its journal directory."""

    def __init__(self, root, dataset, block_bytes=BLOCK_BYTES):
        self.root = os.fspath(root)
        self.dataset = dataset
        self.block_bytes = block_bytes  # weight rows held at once by consolidation and releases
        self.path = os.path.join(self.root, f"{dataset}.h5")
        self.journal = os.path.join(self.root, f"{dataset}.journal")

    def journal_files(self):
        if not os.path.isdir(self.journal):
            return []
        names = sorted(n for n in os.listdir(self.journal) if n.endswith(".h5") and not n.startswith("."))
        return [os.path.join(self.journal, n) for n in names]

    def read(self):
        """``(header or None, {task: TaskTable})``: the consolidated file merged with the journal."""
        sources = ([self.path] if os.path.exists(self.path) else []) + self.journal_files()
        header, parts = None, {}
        for source in sources:
            file_header, tables = read_store_file(source)
            header = _same_header(header, file_header, source)
            for task, table in tables.items():
                parts.setdefault(task, []).append(table)
        return header, {task: merge_tables(tables, header) for task, tables in parts.items()}

    def stored_indices(self, task, header=None, where="ingest"):
        """The network indices of ``task`` already stored (reads only headers and index columns)."""
        known = set()
        for source in ([self.path] if os.path.exists(self.path) else []) + self.journal_files():
            try:
                with h5py.File(source, "r", locking=False) as f:
                    file_header = _read_header(f.attrs)
                    if header is not None:
                        _same_header(file_header, header, where)
                    if task in f:
                        known.update(int(i) for i in f[task]["networks"]["index"][()])
            except (OSError, KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"unreadable dataset file {source}: {exc}") from None
        return known

    def ingest(self, spec, state, attrs):
        """Journal the finished networks of one valid result; returns how many were new.

        Idempotent: networks already stored are skipped, and a workunit's journal file is written
        once, atomically.
        """
        header = header_of(spec)
        task, table = finished_rows(spec, state, attrs, header)
        known = self.stored_indices(task, header, where=f"workunit {spec.name}")
        fresh = [i for i, index in enumerate(table.indices.tolist()) if index not in known]
        if not fresh:
            return 0
        os.makedirs(self.journal, exist_ok=True)
        write_store_file(os.path.join(self.journal, f"{spec.name}.h5"), header, {task: table.take(np.array(fresh))})
        return len(fresh)

    def sources(self):
        return ([self.path] if os.path.exists(self.path) else []) + self.journal_files()

    def columns(self):
        """``(header or None, {task: columns})``: the metadata of every stored network, no weights;
        each ``(task, index)`` once, sorted by index."""
        header, merged = None, {}
        for source in self.sources():
            file_header, tables = read_store_columns(source)
            header = _same_header(header, file_header, source)
            for task, columns in tables.items():
                merged.setdefault(task, []).append(columns)
        result = {}
        for task, parts in merged.items():
            joined = {name: np.concatenate([p[name] for p in parts]) for name in COLUMNS}
            _, first = np.unique(joined["index"], return_index=True)
            result[task] = {name: values[first] for name, values in joined.items()}
        return header, result

    def merge_plan(self):
        """``(header, {task: [(source, row), ...]})``: every network once (the consolidated file
        first, then the journal in name order), sorted by index. Reads index columns only."""
        header, seen = None, {}
        for source in self.sources():
            with h5py.File(source, "r", locking=False) as f:
                file_header = _read_header(f.attrs)
                header = _same_header(header, file_header, source)
                for task in f.keys():
                    indices = f[task]["networks"]["index"][()]
                    for row, index in enumerate(indices.tolist()):
                        seen.setdefault(task, {}).setdefault(index, (source, row))
        return header, {task: [rows[i] for i in sorted(rows)] for task, rows in seen.items()}

    def consolidate(self):
        """Merge the journal into ``<dataset>.h5`` (atomic rename), then delete the merged journal
        files; memory is bounded by one block of weight rows (``BLOCK_BYTES``)."""
        merged_files = self.journal_files()
        if not merged_files:
            return
        header, plans = self.merge_plan()
        with replace_atomically(self.path) as temporary:
            copy_rows(temporary, header, plans, self.block_bytes)
        for path in merged_files:
            os.unlink(path)


def _same_header(known, new, where):
    if known is None:
        return new
    if new.spec_version != known.spec_version:
        raise StoreError(
            f"{where}: SPEC_VERSION {new.spec_version} does not match the store's SPEC_VERSION "
            f"{known.spec_version}; one store holds one spec version"
        )
    if new.architecture != known.architecture:
        raise StoreError(f"{where}: network {new.architecture} differs from the store's {known.architecture}")
    if new.dataset != known.dataset:
        raise StoreError(f"{where}: dataset {new.dataset} does not belong in the {known.dataset} store")
    if new.snapshot_epochs != known.snapshot_epochs:
        raise StoreError(f"{where}: snapshot epochs {list(new.snapshot_epochs)} differ from the store's {list(known.snapshot_epochs)}")
    return known
