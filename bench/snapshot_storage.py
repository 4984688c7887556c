"""What weight snapshots cost in a dataset store: bytes per network with and without them.

Writes store files through the store's own writer for networks that stopped after a given number
of epochs (so they reached the snapshot epochs up to there), with random float32 weights (which
compress like trained ones: hardly at all), and prints bytes per network against the same networks
without snapshots, written in the same run. DS3 is estimated from its parameter count.

    python bench/snapshot_storage.py [--networks 500]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assimilator.store import COLUMNS, StoreHeader, TaskTable, _numpy_dtype, write_store_file  # noqa: E402
from workgen.datasets import DEVICE_SNAPSHOT_EPOCHS, get_dataset  # noqa: E402

STOPPED_AFTER = {"SingleDirect-like (3 epochs)": 3, "Parity-like (60 epochs)": 60, "EightBit-like (230 epochs)": 230,
                 "capped (3,000 epochs)": 3000}  # fmt: skip


def table(networks, header, stopped, rng):
    columns = {name: np.zeros(networks, dtype=_numpy_dtype(kind)) if kind is not str else np.array(["x"] * networks, dtype=object)
               for name, kind in COLUMNS.items()}  # fmt: skip
    columns["index"] = np.arange(networks)
    weights = rng.standard_normal((networks, header.n_params), dtype=np.float32)
    snapshots = rng.standard_normal((networks, len(header.snapshot_epochs), header.n_params), dtype=np.float32)
    snapshots[:, [e > stopped for e in header.snapshot_epochs]] = np.nan
    return TaskTable(weights, columns, snapshots)


def bytes_per_network(directory, header, networks, stopped, rng):
    path = os.path.join(directory, f"store-{len(header.snapshot_epochs)}-{stopped}.h5")
    write_store_file(path, header, {"task": table(networks, header, stopped, rng)})
    return os.path.getsize(path) / networks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=500)
    networks = parser.parse_args().networks
    ds1 = get_dataset("DS1")
    with_snapshots = StoreHeader("DS1", 7, ds1.architecture, DEVICE_SNAPSHOT_EPOCHS)
    without = StoreHeader("DS1", 7, ds1.architecture, ())
    rng = np.random.default_rng(0)
    print(f"DS1/DS2: {with_snapshots.n_params} parameters, snapshot epochs {list(DEVICE_SNAPSHOT_EPOCHS)}, {networks} networks")
    with tempfile.TemporaryDirectory() as directory:
        for label, stopped in STOPPED_AFTER.items():
            reached = sum(e <= stopped for e in DEVICE_SNAPSHOT_EPOCHS)
            base = bytes_per_network(directory, without, networks, stopped, rng)
            full = bytes_per_network(directory, with_snapshots, networks, stopped, rng)
            print(f"  {label}: {reached} snapshots, {full / 1024:.1f} KiB per network against {base / 1024:.1f} without (x{full / base:.2f})")
    ds3 = StoreHeader("DS3", 7, get_dataset("DS3").architecture, ())
    per_snapshot = 4 * ds3.n_params
    print(f"DS3: {ds3.n_params} parameters, {per_snapshot / 1024:.0f} KiB per snapshot; 100 x 10,000 networks: "
          f"{per_snapshot * 1e6 / 1e9:.0f} GB per snapshot epoch (final weights alone: the same again)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
