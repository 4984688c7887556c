"""Weight snapshots and the history at them in the store, releases and the loader (store formats 3, 4).

A network's snapshots travel with its final weights: ingested from a valid result, copied in
bounded blocks by consolidation and releases, and read by ``mlds.load_dataset`` as
``weights_at(epoch)``, with its losses and accuracies after the same epoch as ``history_at(epoch)``
(format 4). Networks that stopped before a snapshot epoch have NaN rows there, so a comparison at
equal training takes the networks that trained that long.
"""

import dataclasses

import h5py
import numpy as np
import pytest

import mlds
from assimilator.release import build_release
from assimilator.store import DatasetStore, StoreError, read_store_file
from boinc_app.networks import flatten_tensors, parameter_layout
from boinc_app.training import CAPPED, CONVERGED, HISTORY_FIELDS, initial_state
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
        # history value: index + epoch / 10 + field / 100, so a shifted epoch or field shows
        network.history = {field: [first_index + k + e / 10 + f / 100 for e in range(1, epochs[k] + 1)]
                           for f, field in enumerate(network.history)}  # fmt: skip
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
    assert header.snapshot_epochs == SNAPSHOT_EPOCHS and header.format_version == 4
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


def expected_history(state):
    """``[N, S, H]``: each network's history after each snapshot epoch it reached, NaN elsewhere."""
    rows = np.full((len(state.networks), len(SNAPSHOT_EPOCHS), len(HISTORY_FIELDS)), np.nan)
    for n, network in enumerate(state.networks):
        for s, epoch in enumerate(SNAPSHOT_EPOCHS):
            if epoch in network.snapshots:
                rows[n, s] = [network.history[field][epoch - 1] for field in HISTORY_FIELDS]
    return rows


def test_the_history_after_each_snapshot_epoch_is_stored_and_released(store, tmp_path):
    store, results = store
    store.consolidate()
    header, tables = read_store_file(store.path)
    assert header.format_version == 4
    expected = np.concatenate([expected_history(state) for _, state, _ in results])
    np.testing.assert_array_equal(tables["ParityMachine"].snapshot_history, expected)
    assert tables["ParityMachine"].snapshot_history[1, 2, 0] == 1 + 0.4  # network 1, after epoch 4, train_loss
    parity = mlds.load_dataset(build_release(store, ["ParityMachine"], 4, tmp_path / "releases"))["ParityMachine"]
    at_2 = parity.history_at(2)
    assert set(at_2) == set(HISTORY_FIELDS)
    np.testing.assert_array_equal(at_2["validation_loss"], expected[:4, 1, HISTORY_FIELDS.index("validation_loss")])
    assert np.isnan(parity.history_at(4)["train_loss"][[0, 2]]).all()
    with pytest.raises(KeyError, match="not 3"):
        parity.history_at(3)


def test_version_3_store_files_read_with_unknown_history(store):
    store, results = store
    store.consolidate()
    with h5py.File(store.path, "r+") as f:  # as the version-3 writer left it
        f.attrs["format_version"] = 3
        del f.attrs["snapshot_history_fields"]
        del f["ParityMachine/snapshot_history"]
    header, tables = read_store_file(store.path)
    assert header.format_version == 3 and tables["ParityMachine"].snapshot_history.shape == (6, 3, len(HISTORY_FIELDS))
    assert np.isnan(tables["ParityMachine"].snapshot_history).all()
    expected = np.concatenate([expected_snapshots(state) for _, state, _ in results])
    np.testing.assert_array_equal(tables["ParityMachine"].snapshots, expected)  # the weights are still there
    store.ingest(*made_result(first_index=6))  # a version-4 journal file beside the version-3 store
    store.consolidate()
    history = read_store_file(store.path)[1]["ParityMachine"].snapshot_history
    assert np.isnan(history[:6]).all() and not np.isnan(history[6, :2]).any()


def test_snapshot_history_of_the_wrong_shape_or_fields_is_refused(store):
    store, _ = store
    store.consolidate()
    with h5py.File(store.path, "r+") as f:
        del f["ParityMachine/snapshot_history"]
        f["ParityMachine"].create_dataset("snapshot_history", data=np.zeros((6, 3, 2)))
    with pytest.raises(StoreError, match=r"ParityMachine/snapshot_history has shape \(6, 3, 2\), expected \(6, 3, 5\)"):
        read_store_file(store.path)
    with h5py.File(store.path, "r+") as f:
        f.attrs["snapshot_history_fields"] = '["train_loss"]'
    with pytest.raises(StoreError, match=r"snapshot_history_fields \[\"train_loss\"\] are not"):
        read_store_file(store.path)


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
