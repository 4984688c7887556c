"""``mlds assimilate`` (script_assimilator's convention) and the project's installed daemon scripts."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from assimilator.script import split_arguments
from assimilator.store import DatasetStore
from mlds.cli import main
from mlds.test_server.create_work import create_jobs, jobs_from
from mlds.test_server.daemons import assimilator_command, run_script, validator_command
from mlds.test_server.project import stage_file
from test_test_server_create_work import APP, make_project


def assimilate(*arguments):
    return CliRunner().invoke(main, ["assimilate", *arguments])


def stored_indices(store, dataset="DS1", task="SingleInvertMachine"):
    _, tables = DatasetStore(store, dataset).read()
    return sorted(tables[task].indices.tolist()) if task in tables else []


def test_split_arguments():
    assert split_arguments(["12", "/u/r_0_0"]) == (12, ["/u/r_0_0"])
    assert split_arguments(["/u/r_0_0"]) == (None, ["/u/r_0_0"])
    assert split_arguments(["12"]) == (None, ["12"])  # a lone argument is a path


def test_wu_id_files_form_stores_once_and_repeats_exit_zero(small_result, tmp_path):
    _, result = small_result
    store = str(tmp_path / "store")
    first = assimilate("--store", store, "42", str(result))
    assert first.exit_code == 0, first.output
    assert "stored 2 new network(s), 0 already stored, 0 still training" in first.output
    assert stored_indices(store) == [0, 1]
    again = assimilate("--store", store, "42", str(result))
    assert again.exit_code == 0 and "stored 0 new network(s), 2 already stored" in again.output
    assert stored_indices(store) == [0, 1]


def test_explicit_paths_and_spec_check(small_result, tmp_path):
    spec, result = small_result
    store = str(tmp_path / "store")
    assert assimilate("--store", store, "--spec", str(spec), str(result)).exit_code == 0
    other = tmp_path / "other.json"
    data = json.loads(spec.read_text())
    data["networks"][0]["init_seed"] += 1
    other.write_text(json.dumps(data))
    wrong = assimilate("--store", str(tmp_path / "store2"), "--spec", str(other), str(result))
    assert wrong.exit_code == 1 and "different spec" in wrong.output


def test_failed_workunit_form_exits_zero(tmp_path):
    result = assimilate("--store", str(tmp_path / "store"), "--error", "10", "wu_b", "7", "0")
    assert result.exit_code == 0 and "wu_b (#7, batch 0) failed with error mask 10" in result.output


@pytest.mark.parametrize("payload", [b"not hdf5", None])
def test_unusable_results_exit_one(tmp_path, payload):
    path = tmp_path / "r_0_0"
    if payload is not None:
        path.write_bytes(payload)
    result = assimilate("--store", str(tmp_path / "store"), "3", str(path))
    assert result.exit_code == 1 and result.output.startswith("error:")
    assert assimilate("--store", str(tmp_path / "store")).exit_code == 1  # nothing to store


def test_installed_scripts_validate_and_assimilate_a_real_result(small_result, tmp_path):
    """bin/mlds_validate and bin/mlds_assimilate, called as the daemons call them, on a trained result."""
    spec, result = small_result
    config = make_project(tmp_path)
    name = stage_file(config, str(spec), copy=True)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu_b", name]))
    connection = config.connect()
    result_id, wuid = connection.execute("SELECT id, wuid FROM result").fetchone()
    upload = config.upload_path("wu_b_0_0")
    os.makedirs(os.path.dirname(upload))
    shutil.copyfile(result, upload)  # what the upload handler would have written
    code, output = run_script(validator_command(("mlds_validate", "files", "result_id"), [upload], result_id, 1.0), config.bin_dir)
    assert code == 0, output
    assert "valid: 2 networks" in output
    code, output = run_script(validator_command(("mlds_validate", "files", "result_id"), [upload], 999, 1.0), config.bin_dir)
    assert code == 3, output  # no such result: transient
    wu = {"id": wuid, "name": "wu_b", "batch": 0, "error_mask": 0}
    code, output = run_script(assimilator_command(("mlds_assimilate",), wu, {"id": result_id, "elapsed_time": 1.0}, [(upload, "result.h5")]), config.bin_dir)
    assert code == 0, output
    assert stored_indices(str(tmp_path / "proj" / "store")) == [0, 1]
