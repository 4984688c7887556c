"""Milestone releases and the researcher's loader."""

import hashlib
import tarfile

import numpy as np
import pytest
import torch

import machines
import mlds
from assimilator.release import build_release, reached_milestones
from assimilator.store import DatasetStore, StoreError
from boinc_app.training import CAPPED, CONVERGED
from test_assimilator_store import made_result

TASKS = ("ParityMachine", "SingleDirectMachine")


@pytest.fixture
def filled_store(tmp_path):
    """Networks 0..5 of ParityMachine (3 converged, 3 capped) and 0..2 of SingleDirectMachine."""
    store = DatasetStore(tmp_path / "store", "DS1")
    store.ingest(*made_result(first_index=3, statuses=(CAPPED,) * 3))
    store.ingest(*made_result(first_index=0, statuses=(CONVERGED,) * 3))
    store.ingest(*made_result(first_index=0, statuses=(CONVERGED,) * 3, machine="SingleDirectMachine"))
    store.consolidate()
    return store


def test_a_milestone_needs_networks_0_to_n_of_every_task(filled_store):
    _, columns = filled_store.columns()
    assert reached_milestones(columns, TASKS, (2, 3, 4, 6)) == [2, 3]
    assert reached_milestones(columns, ("ParityMachine",), (2, 3, 4, 6, 7)) == [2, 3, 4, 6]
    assert reached_milestones(columns, (*TASKS, "EightBitMachine"), (1,)) == []


def test_release_holds_exactly_the_first_n_networks_with_md5_and_readme(filled_store, tmp_path):
    header, tables = filled_store.read()
    archive = build_release(filled_store, ("ParityMachine",), 4, tmp_path / "releases")
    assert archive.endswith("MLDS-DS1-4.tar.gz")
    payload = open(archive, "rb").read()
    assert open(f"{archive}.md5").read() == f"{hashlib.md5(payload).hexdigest()}  MLDS-DS1-4.tar.gz\n"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["MLDS-DS1-4/MLDS-DS1-4.h5", "MLDS-DS1-4/README.md"]
        readme = tar.extractfile("MLDS-DS1-4/README.md").read().decode()
    assert "CC BY-SA 4.0" in readme and f"SPEC_VERSION {machines.SPEC_VERSION}" in readme and "mlds.load_dataset" in readme
    assert "| ParityMachine | 4 | 3 | 1 |" in readme  # networks, converged, stopped at the cap
    dataset = mlds.load_dataset(archive)
    assert list(dataset) == ["ParityMachine"]
    assert dataset["ParityMachine"].metadata["index"].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(dataset["ParityMachine"].weights, tables["ParityMachine"].weights[:4])


def test_release_is_byte_for_byte_reproducible(filled_store, tmp_path):
    first = open(build_release(filled_store, TASKS, 3, tmp_path / "a"), "rb").read()
    second = open(build_release(filled_store, TASKS, 3, tmp_path / "b"), "rb").read()
    assert first == second


def test_loaded_module_computes_what_the_stored_network_computes(filled_store):
    dataset = mlds.load_dataset(filled_store.path)
    assert dataset.name == "DS1" and dataset.spec_version == machines.SPEC_VERSION and len(dataset) == 2
    parity = dataset["ParityMachine"]
    assert len(parity) == 6 and parity.weights.shape == (6, 4364)
    spec, state, _ = made_result(first_index=3, statuses=(CAPPED,) * 3)
    from boinc_app.networks import RecurrentNet

    reference = RecurrentNet(spec.architecture)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.networks[1].weights.items()})
    inputs = torch.rand(2, 7, 11)
    with torch.no_grad():
        torch.testing.assert_close(parity.module(4)(inputs), reference(inputs), rtol=0, atol=0)


def test_loader_names_a_missing_task_and_refuses_other_files(filled_store, tmp_path):
    dataset = mlds.load_dataset(filled_store.path)
    with pytest.raises(KeyError, match="has no 'EightBitMachine'"):
        dataset["EightBitMachine"]
    junk = tmp_path / "junk.tar.gz"
    with tarfile.open(junk, "w:gz") as tar:
        tar.add(__file__, arcname="notes.txt")
    with pytest.raises(StoreError, match="exactly one .h5"):
        mlds.load_dataset(junk)
