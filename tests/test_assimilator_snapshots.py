"""Weight snapshots in the store, releases and the loader (store format 3).

A network's snapshots travel with its final weights: ingested from a valid result, copied in
bounded blocks by consolidation and releases, and read by ``mlds.load_dataset`` as
``weights_at(epoch)``. Networks that stopped before a snapshot epoch have NaN rows there, so a
comparison at equal training takes the networks that trained that long.
"""

import dataclasses

import h5py
import numpy as np
import pytest

import mlds
from assimilator.release import build_release
from assimilator.store import DatasetStore, StoreError, read_store_file
from boinc_app.networks import flatten_tensors, parameter_layout
from boinc_app.training import CAPPED, CONVERGED, initial_state
from workgen.specs import make_spec

SNAPSHOT_EPOCHS = (1, 2, 4)


def made_result(first_index=0, snapshot_epochs=SNAPSHOT_EPOCHS, epochs=(2, 5)):
    """Two finished networks, converged after ``epochs[0]`` and capped after ``epochs[1]``, with the
    snapshots they reached (values from their index and epoch, so a mix-up shows)."""
    spec = make_spec("DS1", "ParityMachine", networks=2, first_index=first_index, max_epochs=5)
    spec = dataclasses.replace(spec, snapshot_epochs=snapshot_epochs)
    state = initial_state(spec)
    layout = parameter_layout(spec.architecture)
    for k, (network, status) in enumerate(zip(state.networks, (CONVERGED, CAPPED))):
        network.status, network.epochs = status, epochs[k]
        network.history = {field: [0.5] * epochs[k] for field in network.history}
        base = flatten_tensors(network.weights, layout)
        network.snapshots = {e: base + np.float32(first_index + k + e) for e in snapshot_epochs if e <= epochs[k]}
    attrs = {"spec_sha256": spec.fingerprint(), "app_version": "0.1.0", "torch_version": "2.13.0",
             "platform": "Linux-test", "device": "test CPU"}  # fmt: skip
    return spec, state, attrs


def expected_snapshots(state):
    rows = []
    for network in state.networks:
        rows.append([network.snapshots.get(e, np.full(4364, np.nan, np.float32)) for e in SNAPSHOT_EPOCHS])
    return np.asarray(rows, dtype=np.float32)


@pytest.fixture
def store(tmp_path):
    store = DatasetStore(tmp_path / "store", "DS1", block_bytes=3 * 4 * 4364 * 4)  # 3 networks a block
    results = [made_result(first_index=i) for i in (0, 2, 4)]
    for result in reversed(results):  # arrival order is not index order
        store.ingest(*result)
    return store, results


def test_snapshots_are_stored_with_nan_where_a_network_had_stopped(store):
    store, results = store
    store.consolidate()
    header, tables = read_store_file(store.path)
    assert header.snapshot_epochs == SNAPSHOT_EPOCHS and header.format_version == 3
    table = tables["ParityMachine"]
    assert table.snapshots.shape == (6, 3, 4364)
    expected = np.concatenate([expected_snapshots(state) for _, state, _ in results])
    np.testing.assert_array_equal(table.snapshots, expected)  # NaN in the same places
    assert np.isnan(table.snapshots[0, 2]).all() and not np.isnan(table.snapshots[1, 2]).any()


def test_a_release_carries_snapshots_and_the_loader_gives_weights_at_an_epoch(store, tmp_path):
    store, results = store
    archive = build_release(store, ["ParityMachine"], 4, tmp_path / "releases")
    parity = mlds.load_dataset(archive)["ParityMachine"]
    assert parity.snapshot_epochs == SNAPSHOT_EPOCHS
    at_2 = parity.weights_at(2)
    expected = np.concatenate([expected_snapshots(state) for _, state, _ in results])[:4]
    np.testing.assert_array_equal(at_2, expected[:, 1])
    assert np.isnan(parity.weights_at(4)[[0, 2]]).all() and not np.isnan(parity.weights_at(4)[[1, 3]]).any()
    with pytest.raises(KeyError, match=r"keeps weights after epochs \[1, 2, 4\], not 3"):
        parity.weights_at(3)


def test_a_result_with_other_snapshot_epochs_is_refused(store):
    store, _ = store
    with pytest.raises(StoreError, match=r"snapshot epochs \[1, 2\] differ from the store's \[1, 2, 4\]"):
        store.ingest(*made_result(first_index=10, snapshot_epochs=(1, 2)))


def test_version_2_store_files_read_with_no_snapshots(store):
    store, _ = store
    store.consolidate()
    with h5py.File(store.path, "r+") as f:
        f.attrs["format_version"] = 2
        del f.attrs["snapshot_epochs"]
        del f["ParityMachine/snapshots"]
    header, tables = read_store_file(store.path)
    assert header.snapshot_epochs == () and tables["ParityMachine"].snapshots.shape == (6, 0, 4364)
    with pytest.raises(KeyError, match="not 1"):
        mlds.load_dataset(store.path)["ParityMachine"].weights_at(1)


def test_snapshots_of_the_wrong_shape_are_refused(store):
    store, _ = store
    store.consolidate()
    with h5py.File(store.path, "r+") as f:
        del f["ParityMachine/snapshots"]
        f["ParityMachine"].create_dataset("snapshots", data=np.zeros((6, 2, 4364), np.float32))
    with pytest.raises(StoreError, match=r"ParityMachine/snapshots has shape \(6, 2, 4364\), expected \(6, 3, 4364\)"):
        read_store_file(store.path)
