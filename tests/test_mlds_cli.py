"""The ``mlds`` command end to end (in-process through click's CliRunner)."""

import h5py
import pytest
from click.testing import CliRunner

from mlds.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def test_spec_train_validate_round_trip(tmp_path, runner):
    spec, result = str(tmp_path / "s.json"), str(tmp_path / "r.h5")
    made = runner.invoke(main, ["spec", "--dataset", "DS1", "--machine", "SingleDirectMachine", "--networks", "1", "--max-epochs", "1", "-o", spec])
    assert made.exit_code == 0, made.output
    assert "DS1-SingleDirectMachine-n000000-k1-c0" in made.output
    trained = runner.invoke(main, ["train", spec, "-o", result])
    assert trained.exit_code == 0, trained.output
    with h5py.File(result, "r") as f:
        assert f["networks/net-000000"].attrs["epochs"] == 1
        assert f["networks/net-000000"].attrs["status"] == "capped"
    checked = runner.invoke(main, ["validate", spec, result, "--no-limits"])
    assert checked.exit_code == 0, checked.output
    assert "valid: 1 networks, 0 converged" in checked.output


def test_train_with_a_bad_spec_exits_2_naming_the_problem(tmp_path, runner):
    (tmp_path / "s.json").write_text('{"format": "mlds-workunit-spec", "format_version": 7}')
    outcome = runner.invoke(main, ["train", str(tmp_path / "s.json"), "-o", str(tmp_path / "r.h5")])
    assert outcome.exit_code == 2
    assert "unknown spec format_version 7" in outcome.output
    assert not (tmp_path / "r.h5").exists()


def test_spec_with_an_unknown_machine_is_a_usage_error(tmp_path, runner):
    outcome = runner.invoke(main, ["spec", "--dataset", "DS1", "--machine", "Toaster", "-o", str(tmp_path / "s.json")])
    assert outcome.exit_code == 2
    assert "DS1 has no machine 'Toaster'" in outcome.output
