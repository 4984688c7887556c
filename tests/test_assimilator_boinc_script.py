"""``bin/mlds_assimilate`` as BOINC's script_assimilator runs it in a real project.

The rule under test: exit 0 for everything the script can act on (a non-zero exit stops BOINC's
assimilator daemon for good), and nothing lost: networks still training get a kept checkpoint and
a follow-up record, unusable results are set aside and recorded for a re-issue.
"""

import io
import shutil

from assimilator.boinc_script import EXIT_HANDLED, EXIT_MISCONFIGURED, main
from assimilator.store import DatasetStore
from boinc_app.workunit_spec import read_spec
from mlds.server.daemon import DaemonLog
from mlds.server.state import ServerState, list_records, read_record
from workgen.plan import RESUME_NAME


def project_with_upload(tmp_path, spec_path, result_path, replica="0"):
    """A project whose mlds/specs holds the spec, and the result as BOINC names an upload."""
    state = ServerState(str(tmp_path / "project"))
    state.make_dirs()
    spec = read_spec(spec_path)
    shutil.copyfile(spec_path, state.spec_path(spec.name))
    upload = tmp_path / "project" / "upload" / "3a" / f"{spec.name}_{replica}_r1234567_0"
    upload.parent.mkdir(parents=True)
    shutil.copyfile(result_path, upload)
    return state, spec, upload


def run(state, *arguments, error_mask=None):
    text = io.StringIO()
    code = main(state.project_root, arguments, error_mask, log=DaemonLog(stream=text))
    return code, text.getvalue()


def test_unfinished_networks_get_a_kept_checkpoint_and_a_follow_up(tmp_path, unfinished_result):
    state, spec, upload = project_with_upload(tmp_path, *unfinished_result)
    code, log = run(state, "17", str(upload))
    assert code == EXIT_HANDLED, log
    follow = f"{spec.name[:-3]}-c1"
    assert list_records(state.followups_dir) == [follow]
    assert read_spec(state.spec_path(follow)).resume_from == RESUME_NAME
    assert open(state.checkpoint_path(follow), "rb").read() == upload.read_bytes()
    upload.unlink()  # file_deleter: the kept copy is now the only one
    assert open(state.checkpoint_path(follow), "rb").read()[:8] == b"\x89HDF\r\n\x1a\n"
    header, tables = DatasetStore(state.store_dir, "DS1").read()
    assert tables == {}  # nothing finished yet, nothing stored


def test_assimilating_twice_changes_nothing(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    assert run(state, "5", str(upload))[0] == EXIT_HANDLED
    first = DatasetStore(state.store_dir, "DS1").read()[1]["SingleInvertMachine"]
    code, log = run(state, "5", str(upload))
    assert code == EXIT_HANDLED and "stored 0 new" in log
    again = DatasetStore(state.store_dir, "DS1").read()[1]["SingleInvertMachine"]
    assert len(again) == len(first) == 2
    assert list_records(state.followups_dir) == []  # capped networks need no follow-up


def test_a_follow_up_continues_from_the_kept_checkpoint_and_releases_it(tmp_path, unfinished_result):
    from tests.conftest import train_spec

    state, spec, upload = project_with_upload(tmp_path, *unfinished_result)
    run(state, "1", str(upload))
    follow = list_records(state.followups_dir)[0]
    slot = tmp_path / "slot"
    slot.mkdir()
    shutil.copyfile(state.checkpoint_path(follow), slot / RESUME_NAME)  # what BOINC ships as its input
    _, follow_result = train_spec(slot, read_spec(state.spec_path(follow)))
    follow_upload = upload.parent / f"{follow}_0_r42_0"
    shutil.copyfile(follow_result, follow_upload)
    code, log = run(state, "2", str(follow_upload))
    assert code == EXIT_HANDLED, log
    assert not (tmp_path / "project" / "mlds" / "checkpoints" / f"{follow}.h5").exists()
    stored = DatasetStore(state.store_dir, "DS1").read()[1]["SingleInvertMachine"]
    assert stored.indices.tolist() == [0, 1] and set(stored.columns["epochs"].tolist()) <= {4} | set(range(1, 5))


def test_a_truncated_upload_is_set_aside_and_recorded_for_a_reissue_with_exit_0(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    upload.write_bytes(upload.read_bytes()[:5000])
    code, log = run(state, "9", str(upload))
    assert code == EXIT_HANDLED
    assert "[CRITICAL]" in log and spec.name in log
    reason = (tmp_path / "project" / "mlds" / "quarantine" / spec.name / "reason.txt").read_text()
    assert "result" in reason.lower()
    assert (tmp_path / "project" / "mlds" / "quarantine" / spec.name / upload.name).read_bytes() == upload.read_bytes()
    assert list_records(state.failed_dir) == [spec.name]
    assert DatasetStore(state.store_dir, "DS1").read()[1] == {}


def test_a_failed_workunit_is_recorded_for_a_reissue(tmp_path, small_result):
    state, spec, _ = project_with_upload(tmp_path, *small_result)
    code, log = run(state, spec.name, "12", "0", error_mask=2)
    assert code == EXIT_HANDLED
    assert "error mask 2" in read_record(state.failed_path(spec.name))["reason"]


def test_an_upload_of_another_app_is_set_aside_not_fatal(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    stranger = upload.parent / "uppercase_wu_0_r1_0"
    shutil.copyfile(upload, stranger)
    code, log = run(state, "3", str(stranger))
    assert code == EXIT_HANDLED and "not an mlds" in log
    assert list_records(state.failed_dir) == []


def test_no_arguments_is_boincs_token_bug_and_stops_the_daemon_with_the_fix(tmp_path):
    state = ServerState(str(tmp_path))
    code, log = run(state)
    assert code == EXIT_MISCONFIGURED
    assert "55e16adf3a" in log and '--script "mlds_assimilate"' in log
