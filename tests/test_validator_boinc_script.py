"""``bin/mlds_validate`` as BOINC's script_validator runs it: tokens, no tokens, BOINC's token bug."""

import io

from mlds.server.daemon import DaemonLog
from tests.test_assimilator_boinc_script import project_with_upload
from validator.boinc_script import main, parse_arguments


def run(state, *arguments):
    text = io.StringIO()
    return main(state.project_root, arguments, log=DaemonLog(stream=text)), text.getvalue()


def test_arguments_are_files_then_result_id_then_runtime():
    call = parse_arguments(["/p/upload/1f/WU_0_r1_0", "928", "2.005456"])
    assert call.paths == ("/p/upload/1f/WU_0_r1_0",) and call.result_id == 928 and call.runtime == 2.005456
    assert parse_arguments(["/p/upload/1f/WU_0_r1_0"]).result_id is None
    assert parse_arguments(["/p/u/x", "1", "nan"]).runtime is None


def test_an_honest_result_is_valid_with_the_documented_tokens_and_with_the_name_alone(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    code, log = run(state, str(upload), "928", "30.5")
    assert code == 0, log
    assert "valid: 2 networks" in log and "result 928" in log
    assert run(state, str(upload))[0] == 0


def test_a_runtime_too_short_for_the_claimed_training_is_logged(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    code, log = run(state, str(upload), "5", "0.000001")
    assert code == 0
    assert "[WARNING]" in log and "implausible" in log


def test_a_tampered_upload_is_invalid(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    upload.write_bytes(upload.read_bytes()[:4000])
    code, log = run(state, str(upload), "7", "3.0")
    assert code == 1, log


def test_no_arguments_is_boincs_token_bug_answered_transient(tmp_path, small_result):
    state, _, _ = project_with_upload(tmp_path, *small_result)
    code, log = run(state)
    assert code == 3
    assert "55e16adf3a" in log and '--init_script "mlds_validate"' in log


def test_a_workunit_the_server_has_no_spec_for_is_transient_not_judged(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    (tmp_path / "project" / "mlds" / "specs" / f"{spec.name}.json").unlink()
    code, log = run(state, str(upload), "8", "3.0")
    assert code == 3 and "mlds/specs" in log
