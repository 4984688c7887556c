"""The dataset store: layout, idempotent ingestion, consolidation, refusal of unknown files."""

import h5py
import numpy as np
import pytest

import machines

from assimilator.store import DatasetStore, StoreError, header_of, read_store_file
from boinc_app.networks import flatten_tensors, unflatten_tensors
from boinc_app.networks import build_network
from boinc_app.result_file import read_result
from boinc_app.training import CAPPED, CONVERGED, TRAINING, initial_state
from workgen.specs import make_spec


def made_result(first_index=0, networks=3, statuses=(CONVERGED, CAPPED, TRAINING), machine="ParityMachine", name_step=0):
    """``(spec, state, attrs)`` as the validator hands them over, without training."""
    spec = make_spec("DS1", machine, networks=networks, first_index=first_index, max_epochs=5, continuation=name_step)
    state = initial_state(spec)
    for k, (network, status) in enumerate(zip(state.networks, statuses)):
        network.status, network.epochs, network.cpu_seconds = status, 5, 1.5
        for field in network.history:
            network.history[field] = [0.5 + 0.1 * k, 0.9 + 0.01 * k]
    attrs = {"spec_sha256": spec.fingerprint(), "app_version": "0.1.0", "torch_version": "2.13.0",
             "platform": "Linux-test", "device": "test CPU"}  # fmt: skip
    return spec, state, attrs


def test_finished_networks_are_stored_as_rows_of_one_matrix(tmp_path):
    store = DatasetStore(tmp_path, "DS1")
    spec, state, attrs = made_result()
    assert store.ingest(spec, state, attrs) == 2  # the network still training is not stored
    header, tables = store.read()
    table = tables["ParityMachine"]
    assert table.weights.shape == (2, 4364) and table.weights.dtype == np.float32
    assert table.indices.tolist() == [0, 1]
    assert table.columns["converged"].tolist() == [True, False]
    assert table.columns["status"].tolist() == [CONVERGED, CAPPED]
    assert table.columns["workunit"].tolist() == [spec.name] * 2
    assert table.columns["best_validation_accuracy"].tolist() == pytest.approx([0.9, 0.91])
    row = unflatten_tensors(table.weights[1], header.layout)
    for key, value in state.networks[1].weights.items():
        np.testing.assert_array_equal(row[key], value)


def test_row_layout_is_the_state_dict_order():
    spec, state, _ = made_result()
    header = header_of(spec)
    module = build_network(spec.architecture, 7)
    weights = {key: value.numpy() for key, value in module.state_dict().items()}
    row = flatten_tensors(weights, header.layout)
    assert row.shape == (4364,)
    np.testing.assert_array_equal(row[: weights["rnn.weight_ih_l0"].size], weights["rnn.weight_ih_l0"].ravel())
    assert [key for key, _ in header.layout] == list(weights)


def test_ingesting_twice_stores_once(tmp_path):
    store = DatasetStore(tmp_path, "DS1")
    spec, state, attrs = made_result()
    assert store.ingest(spec, state, attrs) == 2
    assert store.ingest(spec, state, attrs) == 0
    store.consolidate()
    assert store.ingest(spec, state, attrs) == 0
    assert len(store.read()[1]["ParityMachine"]) == 2


def test_a_follow_up_stores_only_the_networks_not_stored_before(tmp_path):
    store = DatasetStore(tmp_path, "DS1")
    store.ingest(*made_result(statuses=(CONVERGED, TRAINING, TRAINING)))
    assert store.ingest(*made_result(statuses=(CONVERGED, CAPPED, CONVERGED), name_step=1)) == 2
    table = store.read()[1]["ParityMachine"]
    assert table.indices.tolist() == [0, 1, 2]
    assert table.columns["workunit"].tolist() == ["DS1-ParityMachine-n000000-k3-c0"] + ["DS1-ParityMachine-n000000-k3-c1"] * 2


def test_consolidation_merges_the_journal_and_keeps_rows_sorted(tmp_path):
    store = DatasetStore(tmp_path, "DS1")
    store.ingest(*made_result(first_index=3, statuses=(CAPPED,) * 3))
    store.ingest(*made_result(first_index=0, statuses=(CONVERGED,) * 3))
    store.ingest(*made_result(first_index=0, statuses=(CONVERGED,) * 3, machine="SingleDirectMachine"))
    before = store.read()[1]
    store.consolidate()
    assert store.journal_files() == []
    header, tables = read_store_file(store.path)
    assert header.dataset == "DS1" and header.spec_version == machines.SPEC_VERSION
    assert sorted(tables) == ["ParityMachine", "SingleDirectMachine"]
    assert tables["ParityMachine"].indices.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(tables["ParityMachine"].weights, before["ParityMachine"].weights)


def test_a_crash_after_the_rename_before_the_deletions_duplicates_nothing(tmp_path):
    store = DatasetStore(tmp_path, "DS1")
    store.ingest(*made_result())
    journal = store.journal_files()[0]
    kept = open(journal, "rb").read()
    store.consolidate()
    open(journal, "wb").write(kept)  # as if killed before deleting the merged journal file
    assert store.read()[1]["ParityMachine"].indices.tolist() == [0, 1]
    store.consolidate()
    assert store.read()[1]["ParityMachine"].indices.tolist() == [0, 1]


def test_a_real_trained_result_is_stored(tmp_path, small_result):
    spec_path, result_path = small_result
    spec, state, attrs = read_result(result_path)
    store = DatasetStore(tmp_path, "DS1")
    assert store.ingest(spec, state, attrs) == 2
    table = store.read()[1]["SingleInvertMachine"]
    assert table.columns["epochs"].tolist() == [n.epochs for n in state.networks]
    assert table.columns["torch_version"][0] == attrs["torch_version"]


def test_a_result_of_another_spec_version_is_refused(tmp_path):
    import dataclasses

    store = DatasetStore(tmp_path, "DS1")
    store.ingest(*made_result())
    spec, state, attrs = made_result(first_index=3)
    with pytest.raises(StoreError, match=f"SPEC_VERSION 1 .* store's SPEC_VERSION {machines.SPEC_VERSION}"):
        store.ingest(dataclasses.replace(spec, spec_version=1), state, attrs)


def test_restarts_are_stored_as_count_and_last_epoch(tmp_path):
    store = DatasetStore(tmp_path, "DS1")
    spec, state, attrs = made_result()
    state.networks[1].restart_epochs = [2, 4]
    store.ingest(spec, state, attrs)
    columns = store.read()[1]["ParityMachine"].columns
    assert columns["restarts"].tolist() == [0, 2] and columns["last_restart_epoch"].tolist() == [0, 4]


def consolidated_store(tmp_path):
    """A store with one result, merged into its main file (tests then edit that file)."""
    store = DatasetStore(tmp_path, "DS1")
    store.ingest(*made_result())
    store.consolidate()
    return store


def test_version_1_store_files_read_with_zero_restarts(tmp_path):
    store = consolidated_store(tmp_path)
    with h5py.File(store.path, "r+") as f:
        f.attrs["format_version"] = 1
        for name in ("restarts", "last_restart_epoch"):
            del f[f"ParityMachine/networks/{name}"]
    columns = read_store_file(store.path)[1]["ParityMachine"].columns
    assert columns["restarts"].tolist() == [0, 0] and columns["epochs"].tolist() == [5, 5]


def test_unknown_format_version_is_refused_with_a_clear_message(tmp_path):
    store = consolidated_store(tmp_path)
    with h5py.File(store.path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(StoreError, match="format_version 99 is not known"):
        read_store_file(store.path)


@pytest.mark.parametrize("damage", ["truncate", "empty", "not_hdf5", "missing_column", "short_column"])
def test_damaged_store_files_raise_store_error(tmp_path, damage):
    store = DatasetStore(tmp_path, "DS1")
    store.ingest(*made_result())
    store.consolidate()
    if damage in ("truncate", "empty", "not_hdf5"):
        data = open(store.path, "rb").read()
        payload = {"truncate": data[: len(data) // 2], "empty": b"", "not_hdf5": b"plain text\n" * 10}[damage]
        open(store.path, "wb").write(payload)
    else:
        with h5py.File(store.path, "r+") as f:
            column = f["ParityMachine/networks/epochs"]
            if damage == "missing_column":
                del f["ParityMachine/networks/epochs"]
            else:
                del f["ParityMachine/networks/epochs"]
                f["ParityMachine/networks"].create_dataset("epochs", data=np.zeros(1, dtype=np.int64))
            assert column is not None
    with pytest.raises(StoreError):
        store.read()


KILL_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_assimilator_store import made_result
from assimilator.store import DatasetStore
from boinc_app.training import CONVERGED
store = DatasetStore({root!r}, "DS1")
results = [made_result(first_index=3 * i, statuses=(CONVERGED,) * 3) for i in range(8)]
print("started", flush=True)
for i, result in enumerate(results):
    store.ingest(*result)
    if i % 3 == 2:
        store.consolidate()
store.consolidate()
print("done", flush=True)
"""


def _start_ingest_child(root):
    import os
    import subprocess
    import sys

    code = KILL_CHILD.format(tests=os.path.dirname(__file__), root=str(root))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_at_any_moment_of_ingest_leaves_a_consistent_store_and_rerun_completes(tmp_path):
    import random
    import time

    clean = _start_ingest_child(tmp_path / "clean")
    assert clean.stdout.readline() == "started\n"
    began = time.monotonic()
    assert clean.stdout.readline() == "done\n"
    duration = time.monotonic() - began
    clean.wait()
    expected = DatasetStore(tmp_path / "clean", "DS1").read()[1]["ParityMachine"]
    delays = random.Random(8).sample([duration * i / 10 for i in range(10)], 4)
    for trial, delay in enumerate(delays):
        root = tmp_path / f"trial{trial}"
        child = _start_ingest_child(root)
        assert child.stdout.readline() == "started\n"
        time.sleep(delay)  # fault injection: kill at a chosen moment, not synchronisation
        child.kill()
        child.wait()
        store = DatasetStore(root, "DS1")
        partial = store.read()[1].get("ParityMachine")  # readable, whatever the moment
        if partial is not None:
            assert len(set(partial.indices.tolist())) == len(partial)
            assert set(partial.indices.tolist()) <= set(range(24))
        rerun = _start_ingest_child(root)
        assert rerun.stdout.read().splitlines() == ["started", "done"]
        rerun.wait()
        table = store.read()[1]["ParityMachine"]
        assert table.indices.tolist() == list(range(24))
        np.testing.assert_array_equal(table.weights, expected.weights)
