"""script_validator / script_assimilator emulation: command lines and exit codes (mlds.test_server.daemons)."""

import hashlib
import pathlib

import pytest

from mlds.test_server import db
from mlds.test_server.create_work import create_jobs, jobs_from
from mlds.test_server.daemons import (
    DaemonRunner,
    ScriptDaemon,
    assimilator_command,
    parse_daemon,
    run_script,
    validator_command,
    validator_verdict,
)
from mlds.test_server.errors import ProjectError
from mlds.test_server.scheduler import ReportedFile, handle_request
from test_test_server_create_work import APP, make_project, stage_input
from test_test_server_scheduler import _report, client_request

WU = {"id": 7, "name": "wu_b", "batch": 3, "error_mask": 0}
RESULT = {"id": 11, "elapsed_time": 15.5}


def test_daemon_lines_parse_like_config_xml():
    validator = parse_daemon('script_validator -d 3 --app mlds_trainer --init_script "mlds_validate files result_id"')
    assert validator == ScriptDaemon("script_validator", "mlds_trainer", ("mlds_validate", "files", "result_id"))
    assimilator = parse_daemon('script_assimilator --app a --script "mlds_assimilate" --one_pass')
    assert assimilator.script == ("mlds_assimilate",)
    assert parse_daemon("feeder -d 3") is None
    for line, message in [
        ('script_validator --app a --compare_script "c files files2"', "only --init_script"),
        ("script_assimilator --app a", "needs --app and --script"),
        ('script_validator --app a --init_script "../evil files"', "name in bin/"),
    ]:
        with pytest.raises(ProjectError, match=message):
            parse_daemon(line)


def test_validator_command_replaces_tokens_in_order_and_drops_unknown_ones():
    paths = ["/p/upload/1f/r_0_0", "/p/upload/2a/r_0_1"]
    assert validator_command(("v", "result_id", "files", "wu_name", "runtime"), paths, 11, 15.5) == (
        "../bin/v 11 /p/upload/1f/r_0_0 /p/upload/2a/r_0_1 15.500000"
    )
    assert validator_command(("v",), paths[:1], 11, 0.0) == "../bin/v /p/upload/1f/r_0_0"  # default: files


def test_assimilator_command_tokens_defaults_and_error_form():
    files = [("/p/upload/1f/wu_b_0_0", "result.h5")]
    assert assimilator_command(("a",), WU, RESULT, files) == "../bin/a 7 /p/upload/1f/wu_b_0_0"  # wu_id files
    everything = ("a", "files2", "wu_name", "wu_id", "result_id", "runtime", "batch_id", "bogus")
    assert assimilator_command(everything, WU, RESULT, files) == "../bin/a /p/upload/1f/wu_b_0_0 result.h5 wu_b 7 11 15.500000 3"
    assert assimilator_command(("a", "files"), dict(WU, error_mask=10), None) == "../bin/a --error 10 wu_b 7 3"


@pytest.mark.parametrize("code, verdict", [(0, "valid"), (3, "transient"), (1, "invalid"), (2, "invalid"), (-9, "invalid")])
def test_validator_exit_codes(code, verdict):
    assert validator_verdict(code) == verdict


def test_scripts_run_through_sh_from_bin(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "show"
    script.write_text('#!/bin/sh\necho "$PWD $*"\nexit 3\n')
    script.chmod(0o755)
    assert run_script("../bin/show a b", str(bin_dir)) == (3, f"{bin_dir} a b")
    assert run_script("../bin/missing", str(bin_dir))[0] == 127
    assert run_script("sleep 5", str(bin_dir), timeout=0.2)[0] == -1


def fake_script(config, name, exit_code):
    """Replace a daemon script with one that records its arguments and exits with ``exit_code``."""
    path = pathlib.Path(config.bin_dir) / name
    path.write_text(f'#!/bin/sh\necho "$*" >> "$0.calls"\nexit {exit_code}\n')
    path.chmod(0o755)
    return path


def calls(path):
    log = pathlib.Path(f"{path}.calls")
    return log.read_text().splitlines() if log.exists() else []


def reported_project(tmp_path, **create_options):
    """A project whose one result has been uploaded and reported as a success."""
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    extra = [item for pair in create_options.items() for item in (f"--{pair[0]}", str(pair[1]))]
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu_b", *extra, name]))
    outcome = handle_request(config, client_request("first", config))
    path = pathlib.Path(config.upload_path("wu_b_0_0"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"result")
    files = (ReportedFile("wu_b_0_0", 6.0, hashlib.md5(b"result").hexdigest()),)
    handle_request(config, _report(config, outcome.hostid, files))
    return config


def _row(config, sql):
    return config.connect().execute(sql).fetchone()


def test_valid_result_is_assimilated_with_the_configured_tokens(tmp_path):
    config = reported_project(tmp_path)
    validate, assimilate = fake_script(config, "mlds_validate", 0), fake_script(config, "mlds_assimilate", 0)
    runner = DaemonRunner(config)
    assert runner.run_once() == 2
    result = _row(config, "SELECT * FROM result")
    upload = config.upload_path("wu_b_0_0")
    assert calls(validate) == [f"{upload} {result['id']}"]  # "mlds_validate files result_id"
    assert calls(assimilate) == [f"{result['wuid']} {upload}"]  # "mlds_assimilate wu_id files"
    wu = _row(config, "SELECT * FROM workunit")
    assert (result["validate_state"], wu["canonical_resultid"], wu["assimilate_state"]) == (db.VALID, result["id"], db.DONE)
    assert runner.run_once() == 0  # nothing left, nothing repeated


def test_transient_validation_is_retried_later(tmp_path):
    config = reported_project(tmp_path)
    validate = fake_script(config, "mlds_validate", 3)
    now = [1000.0]
    runner = DaemonRunner(config, clock=lambda: now[0])
    runner.run_once()
    runner.run_once()
    assert len(calls(validate)) == 1 and _row(config, "SELECT validate_state FROM result")[0] == db.INIT
    now[0] += 60
    fake_script(config, "mlds_validate", 0)
    runner.run_once()
    assert _row(config, "SELECT validate_state FROM result")[0] == db.VALID


def test_invalid_result_fails_the_workunit_and_reaches_the_assimilator_as_error(tmp_path):
    config = reported_project(tmp_path)
    fake_script(config, "mlds_validate", 1)
    assimilate = fake_script(config, "mlds_assimilate", 0)
    DaemonRunner(config).run_once()
    wu = _row(config, "SELECT * FROM workunit")
    assert _row(config, "SELECT validate_state FROM result")[0] == db.INVALID
    assert calls(assimilate) == [f"--error {wu['error_mask']} wu_b {wu['id']} 0"] and wu["error_mask"]
    assert wu["assimilate_state"] == db.DONE


def test_invalid_result_gets_a_replacement_while_allowed(tmp_path):
    config = reported_project(tmp_path, max_total_results=2, max_error_results=2)
    fake_script(config, "mlds_validate", 1)
    DaemonRunner(config).run_once()
    assert _row(config, "SELECT server_state FROM result WHERE name = 'wu_b_1'")[0] == db.UNSENT
    assert _row(config, "SELECT assimilate_state FROM workunit")[0] == db.INIT


def test_a_failing_assimilator_stops_assimilation(tmp_path):
    config = reported_project(tmp_path)
    fake_script(config, "mlds_validate", 0)
    assimilate = fake_script(config, "mlds_assimilate", 1)
    runner = DaemonRunner(config)
    runner.run_once()
    runner.run_once()
    assert len(calls(assimilate)) == 1 and "exited 1" in runner.assimilator_stopped
    wu = _row(config, "SELECT * FROM workunit")
    assert wu["assimilate_state"] == db.READY and "exited 1" in wu["assimilate_error"]


def test_init_installs_working_daemon_scripts(tmp_path):
    """The generated bin/ scripts are shell scripts calling this environment's mlds."""
    config = make_project(tmp_path)
    text = (pathlib.Path(config.bin_dir) / "mlds_validate").read_text()
    assert "test-server input-path --project" in text and 'validate "$spec" "$1"' in text
    assert "assimilate --store" in (pathlib.Path(config.bin_dir) / "mlds_assimilate").read_text()
    assert [parse_daemon(line).script[0] for line in config.daemons] == ["mlds_validate", "mlds_assimilate"]
