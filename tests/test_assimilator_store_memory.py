"""Consolidation and releases in bounded memory: a store is never loaded whole on the server.

A synthetic store (random rows written as the journal would hold them) of ~140 MB of weights is
consolidated and released in a child process; its peak resident memory must stay far below the
store's size. The content must equal what the in-memory merge gives.
"""

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from assimilator.store import COLUMNS, DatasetStore, TaskTable, _numpy_dtype, header_of, write_store_file
from workgen.specs import make_spec

ROWS_PER_FILE, FILES = 256, 32  # 8,192 networks x 4,364 float32 = 143 MB
BLOCK = 8  # MiB of weight rows at once


def synthetic_journal(root, files=FILES, rows=ROWS_PER_FILE, seed=0):
    # weights only: the snapshot blocks are bounded the same way (tests/test_assimilator_snapshots.py)
    header = dataclasses.replace(header_of(make_spec("DS1", "ParityMachine")), snapshot_epochs=())
    store = DatasetStore(root, "DS1")
    chance = np.random.default_rng(seed)
    (root / "DS1.journal").mkdir(parents=True)
    for f in chance.permutation(files):  # arrival order is not index order
        indices = np.arange(f * rows, (f + 1) * rows)
        columns = {name: np.zeros(rows, dtype=_numpy_dtype(kind)) if kind is not str else np.array(["x"] * rows, dtype=object)
                   for name, kind in COLUMNS.items()}  # fmt: skip
        columns["index"] = indices
        weights = chance.standard_normal((rows, header.n_params), dtype=np.float32)
        write_store_file(root / "DS1.journal" / f"wu-{f:04d}.h5", header, {"ParityMachine": TaskTable(weights, columns)})
    return store


def test_consolidation_equals_the_in_memory_merge_and_sorts_by_index(tmp_path):
    store = synthetic_journal(tmp_path, files=6, rows=5)
    expected = store.read()[1]["ParityMachine"]
    store.consolidate()
    assert store.journal_files() == []
    got = store.read()[1]["ParityMachine"]
    assert got.indices.tolist() == list(range(30))
    np.testing.assert_array_equal(got.weights, expected.weights)


@pytest.mark.slow
def test_consolidating_and_releasing_a_large_store_stays_within_a_block_of_memory(tmp_path):
    synthetic_journal(tmp_path)
    child = textwrap.dedent(f"""
        from assimilator.release import build_release
        from assimilator.store import DatasetStore
        def status_kb(field):
            return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
        store = DatasetStore({str(tmp_path)!r}, "DS1", block_bytes={BLOCK << 20})
        open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
        before = status_kb("VmRSS")
        build_release(store, ("ParityMachine",), {ROWS_PER_FILE * FILES}, {str(tmp_path / "releases")!r})
        print(before, status_kb("VmHWM"))
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    before_kb, after_kb = map(int, done.stdout.split())
    weights_mb = ROWS_PER_FILE * FILES * 4364 * 4 / 1e6
    grown_mb = (after_kb - before_kb) / 1e3
    print(f"\nconsolidate + release of {weights_mb:.0f} MB of weights in {BLOCK} MiB blocks: peak RSS grew {grown_mb:.0f} MB")
    assert grown_mb < 8 * BLOCK < weights_mb / 2  # a block read, a block written, HDF5 caches; never the store
    store = DatasetStore(tmp_path, "DS1")
    assert store.journal_files() == [] and store.columns()[1]["ParityMachine"]["index"].tolist() == list(range(ROWS_PER_FILE * FILES))
