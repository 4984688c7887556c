"""Weight snapshots (result format 4): the validator checks them as it checks final weights.

A snapshot is what a network's weights were after one of the spec's ``snapshot_epochs``. Forged
ones would poison every comparison at equal training, so they are held to the same standard:
finite, at exactly the spec's epochs, unchanged by a follow-up, and, where the spot check
re-trains through them, equal to the re-execution within its weight tolerance.
"""

import copy
import dataclasses

import h5py
import numpy as np
import pytest

from boinc_app import training
from boinc_app.result_file import ResultFileError, read_result, write_result
from boinc_app.task_data import task_data
from boinc_app.workunit_spec import SpecError, spec_from_dict, write_spec
from tests.conftest import SilentControl
from validator.checks import InvalidResult, validate_files
from validator.spot_check import spot_check
from workgen.specs import make_spec, with_data

EVERYTHING = 10.0  # re-train every network to its end


def snapshot_spec(epochs=3, **changes):
    spec = make_spec("DS1", "ParityMachine", networks=3, max_epochs=50, epoch_budget=epochs, **changes)
    return dataclasses.replace(with_data(spec, train_size=256, validation_size=200), snapshot_epochs=(1, 2, 4))


@pytest.fixture(scope="module")
def spec():
    return snapshot_spec()


@pytest.fixture(scope="module")
def honest(spec):
    return training.train(spec, task_data(spec), training.initial_state(spec), SilentControl())


@pytest.fixture
def written(tmp_path, spec, honest):
    write_spec(spec, tmp_path / "spec.json")
    write_result(tmp_path / "result.h5", spec, honest, complete=True)
    return tmp_path / "spec.json", tmp_path / "result.h5"


def test_honest_snapshots_are_written_read_and_valid(written, honest):
    _, state, attrs = read_result(written[1])
    assert attrs["format_version"] == 4
    for network, original in zip(state.networks, honest.networks):
        assert sorted(network.snapshots) == [1, 2]  # 4 not reached
        for epoch in (1, 2):
            assert np.array_equal(network.snapshots[epoch], original.snapshots[epoch])
    assert validate_files(*written).verdict == "valid"


def edited(path, change):
    with h5py.File(path, "r+") as f:
        change(f["networks/net-000001"])
    return path


def test_a_nan_snapshot_is_invalid(written):
    def nan(group):
        values = group["snapshots"][()]
        values[0, 5] = np.nan
        group["snapshots"][...] = values

    outcome = validate_files(written[0], edited(written[1], nan))
    assert outcome.verdict == "invalid" and "net-000001: the snapshot after epoch 1 holds NaN or Inf" in outcome.reason


@pytest.mark.parametrize("epochs", [[1], [1, 3], [2, 1], [1, 2, 4]])
def test_snapshots_at_other_epochs_than_the_spec_s_are_refused(written, epochs):
    def relabel(group):
        group.attrs["snapshot_epochs"] = np.asarray(epochs, dtype=np.int64)

    outcome = validate_files(written[0], edited(written[1], relabel))
    assert outcome.verdict == "invalid" and f"snapshot_epochs {epochs}, expected [1, 2]" in outcome.reason


def test_a_result_without_the_snapshots_its_spec_asks_for_is_refused(written):
    def old_layout(f):
        f.attrs["format_version"] = 3
        for group in f["networks"].values():
            del group["snapshots"]
            del group.attrs["snapshot_epochs"]

    with h5py.File(written[1], "r+") as f:
        old_layout(f)
    with pytest.raises(ResultFileError, match="format 3 holds no snapshots, but the spec asks for them"):
        read_result(written[1])


def test_an_invented_snapshot_fails_the_re_execution(spec, honest):
    state = copy.deepcopy(honest)
    network = state.networks[2]
    network.snapshots[1] = network.snapshots[1] + np.float32(0.01) * np.sign(network.snapshots[1])
    with pytest.raises(InvalidResult, match="net-000002: weights after epoch 1 .* from the re-executed"):
        spot_check(spec, state, np.random.default_rng(0), data=task_data(spec), budget_share=EVERYTHING)
    spot_check(spec, honest, np.random.default_rng(0), data=task_data(spec), budget_share=EVERYTHING)  # the control


def test_a_follow_up_keeps_its_previous_snapshots_and_adds_its_own(spec, honest):
    follow_up = snapshot_spec(epochs=1, continuation=1, resume_from="previous.h5")
    start = training.continue_state(follow_up, copy.deepcopy(honest))
    state = training.train(follow_up, task_data(follow_up), start, SilentControl())
    assert all(sorted(n.snapshots) == [1, 2, 4] and n.epochs == 4 for n in state.networks)
    data = task_data(follow_up)
    spot_check(follow_up, state, np.random.default_rng(0), resume_state=honest, data=data, budget_share=EVERYTHING)
    state.networks[0].snapshots[2] = state.networks[0].snapshots[1]
    with pytest.raises(InvalidResult, match="net-000000: snapshots before epoch 3 differ from the previous result"):
        spot_check(follow_up, state, np.random.default_rng(0), resume_state=honest, data=data, budget_share=EVERYTHING)


@pytest.mark.parametrize(
    "epochs, problem",
    [([0, 2], "must increase within 1..1000000"), ([3, 2], "must increase"), ([1, 10**6 + 1], "within 1..1000000"),
     ([1.5], "whole numbers"), ([True], "whole numbers"), ("1,2", "a list"), (list(range(1, 66)), "at most 64")],
)  # fmt: skip
def test_bad_snapshot_epochs_are_refused(spec, epochs, problem):
    values = {**spec.to_dict(), "snapshot_epochs": epochs}
    with pytest.raises(SpecError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        spec_from_dict(values)


def test_a_spec_without_snapshots_keeps_its_json_and_fingerprint(spec):
    plain = dataclasses.replace(spec, snapshot_epochs=())
    assert "snapshot_epochs" not in plain.to_dict()
    assert spec_from_dict(plain.to_dict()) == plain
    assert spec_from_dict(spec.to_dict()).snapshot_epochs == (1, 2, 4)


@pytest.mark.parametrize(
    "rewrite, problem",
    [({"compression": "gzip"}, "snapshots is stored chunked with filters ['deflate']"),
     ({"dtype": np.float64}, "snapshots has dtype float64, expected float32"),
     ({"reshape": (2, 2, -1)}, "snapshots has shape (2, 2, 2182), expected (2, 4364)")],
)  # fmt: skip
def test_snapshots_get_the_layout_checks_of_every_tensor(written, rewrite, problem):
    def replace(group):
        values = group["snapshots"][()]
        del group["snapshots"]
        shape = rewrite.get("reshape")
        data = values.reshape(shape) if shape else values.astype(rewrite.get("dtype", np.float32))
        group.create_dataset("snapshots", data=data, **{k: v for k, v in rewrite.items() if k == "compression"})

    outcome = validate_files(written[0], edited(written[1], replace))
    assert outcome.verdict == "invalid" and f"network net-000001: {problem}" in outcome.reason, outcome
