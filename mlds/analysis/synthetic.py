"""Synthetic DS1/DS2 store files with a known planted difference, written by the store's own writer.

Why: a study must be shown to fail where it should: at chance on a null pair, above chance on a
planted difference. Training real networks for that takes minutes; these files take milliseconds,
pass the loader's checks like any store file, and let a reader try ``mlds analyze`` at once.
Weights are drawn as PyTorch initialises the layers (uniform in ±1/√fan-in, ±1/√H for the
recurrent stack); ``shift`` is added to every layer's update-gate (``z``) biases of the DS2 side,
the planted "trigger"; with ``norm_neutral``, DS2's z-gate biases are made positive instead (their
absolute values), a difference the weight norm cannot see. With ``twins``, DS2 network ``i`` is DS1 network ``i`` plus small noise and
shares its seeds, as before SPEC_VERSION 7. With ``snapshot_epochs``, each network keeps a snapshot
after each of those epochs it reached (its ``epochs`` column, 2 to 5): its final weights plus
small noise, so a planted difference shows at equal training too, and the training history
after it (losses uniform in 0.01–0.5 on both sides, plus ``snapshot_loss_shift`` on DS2's: a
difference in progress that only the losses at equal training show).
"""

import os
from dataclasses import dataclass

import numpy as np

from assimilator.store import COLUMNS, StoreHeader, TaskTable, write_store_file
from boinc_app.training import HISTORY_FIELDS
from boinc_app.networks import DEVICE_ARCHITECTURE, parameter_layout
from machines import SPEC_VERSION


@dataclass(frozen=True)
class SyntheticConfig:
    machines: tuple = ("SingleDirect",)  # base names
    networks: int = 60  # per task, converged ones
    unconverged: int = 2  # per task, stored with converged=False (a study must leave them out)
    shift: float = 0.0  # added to DS2's z-gate biases: 0 is a null pair
    norm_neutral: bool = False  # DS2's z-gate biases replaced by their absolute values
    twins: bool = False  # DS2 network i = DS1 network i + noise, same seeds
    twin_noise: float = 0.01
    seed: int = 0
    snapshot_epochs: tuple = ()  # epochs after which weights are kept (NaN where not reached)
    snapshot_loss_shift: float = 0.0  # added to DS2's losses after each snapshot epoch


def random_weights(count, arch, rng):
    """``[count, n_params]`` float32, each tensor uniform in PyTorch's default range for its layer."""
    parts = []
    for key, shape in parameter_layout(arch):
        bound = 1 / np.sqrt(arch.hidden_size if key.startswith("rnn.") else shape[-1])
        parts.append(rng.uniform(-bound, bound, (count, int(np.prod(shape)))))
    return np.concatenate(parts, axis=1).astype(np.float32)


def z_bias_columns(arch):
    """Column numbers of every layer's update-gate rows of ``bias_hh`` in a flat weight row."""
    columns, offset, hidden = [], 0, arch.hidden_size
    for key, shape in parameter_layout(arch):
        if key.startswith("rnn.bias_hh_l"):
            columns += range(offset + hidden, offset + 2 * hidden)
        offset += int(np.prod(shape))
    return np.asarray(columns)


def synthetic_table(weights, rng, unconverged, seeds=None, snapshot_epochs=(), loss_shift=0.0):
    """A ``TaskTable`` of ``weights``, the last ``unconverged`` rows capped, metadata as the store's columns."""
    count = len(weights)
    seeds = rng.integers(1, 2**62, (count, 2)) if seeds is None else seeds
    converged = np.arange(count) < count - unconverged
    values = {
        "index": np.arange(count), "key": [f"net-{i:06d}" for i in range(count)],
        "init_seed": seeds[:, 0], "order_seed": seeds[:, 1], "converged": converged,
        "status": np.where(converged, "converged", "capped"), "epochs": rng.integers(2, 6, count),
        "restarts": np.zeros(count, dtype=np.int64), "last_restart_epoch": np.zeros(count, dtype=np.int64),
        "train_loss": rng.uniform(0.01, 0.05, count), "validation_loss": rng.uniform(0.01, 0.05, count),
        "validation_accuracy": np.ones(count), "best_validation_accuracy": np.ones(count),
        "post_trigger_accuracy": np.ones(count), "cpu_seconds": rng.uniform(1, 2, count),
    }  # fmt: skip
    for name, kind in COLUMNS.items():
        values.setdefault(name, ["synthetic"] * count if kind is str else np.zeros(count))
    columns = {name: np.asarray(values[name], dtype=object if kind is str else kind) for name, kind in COLUMNS.items()}
    snapshots = weights[:, None, :] + rng.normal(0, 0.01, (count, len(snapshot_epochs), weights.shape[1])).astype(np.float32)
    not_reached = np.asarray(snapshot_epochs)[None, :] > columns["epochs"][:, None]
    snapshots[not_reached] = np.nan
    history = rng.uniform(0.01, 0.5, (count, len(snapshot_epochs), len(HISTORY_FIELDS)))
    history[..., [HISTORY_FIELDS.index("train_loss"), HISTORY_FIELDS.index("validation_loss")]] += loss_shift
    history[not_reached] = np.nan
    return TaskTable(weights, columns, snapshots, history)


def write_synthetic(directory, config=SyntheticConfig(), arch=DEVICE_ARCHITECTURE):
    """Write ``DS1.h5`` and ``DS2.h5`` under ``directory``; returns their paths."""
    rng = np.random.default_rng(config.seed)
    count = config.networks + config.unconverged
    ds1, ds2 = {}, {}
    for base in config.machines:
        clean = random_weights(count, arch, rng)
        seeds = rng.integers(1, 2**62, (count, 2))
        if config.twins:
            trojaned, trojan_seeds = clean + rng.normal(0, config.twin_noise, clean.shape).astype(np.float32), seeds
        else:
            trojaned, trojan_seeds = random_weights(count, arch, rng), rng.integers(1, 2**62, (count, 2))
        trojaned[:, z_bias_columns(arch)] += np.float32(config.shift)
        if config.norm_neutral:
            trojaned[:, z_bias_columns(arch)] = np.abs(trojaned[:, z_bias_columns(arch)])
        ds1[f"{base}Machine"] = synthetic_table(clean, rng, config.unconverged, seeds, config.snapshot_epochs)
        ds2[f"{base}Modified"] = synthetic_table(trojaned, rng, config.unconverged, trojan_seeds, config.snapshot_epochs,
                                                 config.snapshot_loss_shift)  # fmt: skip
    paths = []
    os.makedirs(directory, exist_ok=True)
    for dataset, tables in (("DS1", ds1), ("DS2", ds2)):
        path = os.path.join(os.fspath(directory), f"{dataset}.h5")
        write_store_file(path, StoreHeader(dataset, SPEC_VERSION, arch, snapshot_epochs=tuple(config.snapshot_epochs)), tables)
        paths.append(path)
    return paths
