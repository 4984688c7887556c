"""The scheduler RPC: real 7.20.5 requests in, replies checked with lxml (mlds.test_server.scheduler, reply)."""

import dataclasses
import hashlib
import pathlib

import pytest
from lxml import etree

from mlds.test_server import db, keys
from mlds.test_server.apps import AppVersionSpec, add_app_version
from mlds.test_server.create_work import create_jobs, jobs_from
from mlds.test_server.errors import ProjectError, ProtocolError
from mlds.test_server.project import init_project
from mlds.test_server.reply import ServerUrls, build_reply
from mlds.test_server.scheduler import ReportedFile, handle_request, parse_request
from test_test_server_create_work import APP, make_project, stage_input

FIXTURES = pathlib.Path(__file__).parent / "data" / "boinc_client_7.20.5"


def client_request(name, config, **changes):
    """A request the real client sent (``scheduler_request_<name>.xml``), with this project's account key."""
    request = parse_request((FIXTURES / f"scheduler_request_{name}.xml").read_bytes())
    return dataclasses.replace(request, authenticator=config.authenticator, **changes)


def rpc(config, request):
    outcome = handle_request(config, request)
    document = build_reply(config, ServerUrls("http://127.0.0.1:31480", config.fanout), outcome, request.p_fpops)
    return outcome, etree.fromstring(document)


@pytest.fixture
def project(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu_b", name]))
    return config


def result_row(config, name="wu_b_0"):
    return config.connect().execute("SELECT * FROM result WHERE name = ?", (name,)).fetchone()


def test_real_client_requests_parse():
    first = parse_request((FIXTURES / "scheduler_request_first.xml").read_bytes())
    assert (first.hostid, first.platforms, first.has_code_sign_key, first.work_seconds) == (0, ("x86_64-pc-linux-gnu",), False, 1.0)
    assert first.client_version == (7, 20, 5) and first.results == ()
    report = parse_request((FIXTURES / "scheduler_request_report.xml").read_bytes())
    (result,) = report.results
    assert report.has_code_sign_key and report.hostid == 1
    assert (result.name, result.state, result.exit_status, result.succeeded) == ("wu_b_0", 5, 0, True)
    assert result.files == (ReportedFile("wu_b_0_0", 91360.0, "52be86ed276dda7098f2ccd50aa493df"),)
    assert "finished: 0/1 networks converged" in result.stderr_out and result.elapsed_time == pytest.approx(15.090335)


def test_first_reply_carries_key_host_app_version_and_job(project):
    outcome, reply = rpc(project, client_request("first", project))
    assert outcome.sent and reply.tag == "scheduler_reply"
    assert reply.findtext("master_url") == "http://127.0.0.1:31480/"
    assert reply.findtext("hostid") == str(outcome.hostid)
    assert reply.findtext("code_sign_key") == project.public_key_text()
    assert [a.findtext("name") for a in reply.findall("app")] == [APP]
    version = reply.find("app_version")
    assert (version.findtext("app_name"), version.findtext("version_num"), version.findtext("platform")) == (APP, "100", "x86_64-pc-linux-gnu")
    assert version.findtext("api_version") == "7.20.0"
    main_ref = version.find("file_ref")
    assert main_ref.find("main_program") is not None
    infos = {info.findtext("name"): info for info in reply.findall("file_info")}
    app_file = infos[main_ref.findtext("file_name")]
    assert app_file.find("executable") is not None
    assert app_file.findtext("url").startswith("http://127.0.0.1:31480/download/")
    payload = pathlib.Path(project.download_path(app_file.findtext("name"))).read_bytes()
    md5 = hashlib.md5(payload).hexdigest()
    assert (app_file.findtext("md5_cksum"), int(app_file.findtext("nbytes"))) == (md5, len(payload))
    public_key = keys.load_public_key(reply.findtext("code_sign_key"))
    assert keys.signature_matches(md5, app_file.findtext("file_signature"), public_key)


def test_first_reply_describes_workunit_and_result(project):
    _, reply = rpc(project, client_request("first", project))
    infos = {info.findtext("name"): info for info in reply.findall("file_info")}
    workunit = reply.find("workunit")
    assert (workunit.findtext("name"), workunit.findtext("app_name")) == ("wu_b", APP)
    (ref,) = workunit.findall("file_ref")
    assert ref.findtext("open_name") == "spec.json"
    assert infos[ref.findtext("file_name")].findtext("url") == f"http://127.0.0.1:31480/download/{_hex(project, ref.findtext('file_name'))}/spec_a.json"
    result = reply.find("result")
    assert (result.findtext("name"), result.findtext("wu_name"), result.findtext("platform")) == ("wu_b_0", "wu_b", "x86_64-pc-linux-gnu")
    assert float(result.findtext("report_deadline")) > 0
    (out_ref,) = result.findall("file_ref")
    assert (out_ref.findtext("file_name"), out_ref.findtext("open_name")) == ("wu_b_0_0", "result.h5")
    output = infos["wu_b_0_0"]
    assert "file_upload_handler" in output.findtext("url")  # else the client tries to download it
    assert int(output.findtext("max_nbytes")) == 64 << 20
    assert result_row(project)["server_state"] == db.IN_PROGRESS


def _hex(config, name):
    return pathlib.Path(config.download_path(name)).parent.name


def test_key_is_not_sent_again_and_nothing_is_sent_twice(project):
    outcome, _ = rpc(project, client_request("first", project))
    request = client_request("report", project, hostid=outcome.hostid, results=())
    again, reply = rpc(project, request)
    assert reply.find("code_sign_key") is None and reply.find("hostid") is None
    assert again.sent == [] and reply.find("result") is None
    assert [m.text for m in reply.findall("message")] == ["No tasks are available"]


def _upload(config, payload, name="wu_b_0_0"):
    path = pathlib.Path(config.upload_path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return ReportedFile(name, float(len(payload)), hashlib.md5(payload).hexdigest())


def _report(config, hostid, files=None, **changes):
    request = client_request("report", config, hostid=hostid, work_seconds=0.0)
    reported = dataclasses.replace(request.results[0], **changes)
    if files is not None:
        reported = dataclasses.replace(reported, files=files)
    return dataclasses.replace(request, results=(reported,))


def test_a_reported_success_is_recorded_and_acked(project):
    outcome, _ = rpc(project, client_request("first", project))
    uploaded = _upload(project, b"x" * 100)
    after, reply = rpc(project, _report(project, outcome.hostid, (uploaded,)))
    assert [a.findtext("name") for a in reply.findall("result_ack")] == ["wu_b_0"]
    row = result_row(project)
    assert (row["server_state"], row["outcome"], row["validate_state"]) == (db.OVER, db.SUCCESS, db.INIT)
    assert row["elapsed_time"] == pytest.approx(15.090335) and "networks converged" in row["stderr_out"]
    assert after.sent == []


@pytest.mark.parametrize(
    "changes, upload, message",
    [
        ({}, False, "never uploaded"),
        ({"state": 3, "exit_status": 1}, True, "exit status 1"),
        ({}, "short", "bytes on the server"),
        ({}, "md5", "md5 differs"),
    ],
)
def test_failed_reports_are_client_errors_and_end_the_workunit(project, changes, upload, message):
    outcome, _ = rpc(project, client_request("first", project))
    files = None
    if upload:
        files = (_upload(project, b"y" * 100),)
        if upload == "short":
            files = (dataclasses.replace(files[0], nbytes=200.0),)
        if upload == "md5":
            files = (dataclasses.replace(files[0], md5="0" * 32),)
    _, reply = rpc(project, _report(project, outcome.hostid, files, **changes))
    assert reply.find("result_ack") is not None
    row = result_row(project)
    assert (row["outcome"], message in row["validate_message"]) == (db.CLIENT_ERROR, True)
    wu = project.connect().execute("SELECT * FROM workunit").fetchone()
    assert wu["assimilate_state"] == db.READY and wu["error_mask"] & db.WU_ERROR_TOO_MANY_TOTAL_RESULTS


def test_a_client_error_gets_a_replacement_while_results_remain(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu_b", "--max_total_results", "2", "--max_error_results", "2", name]))
    outcome, _ = rpc(config, client_request("first", config))
    rpc(config, _report(config, outcome.hostid, state=3, exit_status=1))
    assert result_row(config, "wu_b_1")["server_state"] == db.UNSENT


def test_reports_of_unknown_or_foreign_results_are_acked_but_ignored(project):
    outcome, _ = rpc(project, client_request("first", project))
    _, reply = rpc(project, _report(project, outcome.hostid + 1, name="wu_b_0"))  # another host
    _, reply2 = rpc(project, _report(project, outcome.hostid, name="nobody_0"))
    assert reply.findtext("result_ack/name") == "wu_b_0" and reply2.findtext("result_ack/name") == "nobody_0"
    assert result_row(project)["server_state"] == db.IN_PROGRESS


def test_a_wrong_account_key_gets_only_a_message(project):
    request = dataclasses.replace(client_request("first", project), authenticator="guess")
    outcome, reply = rpc(project, request)
    assert not outcome.authenticated and outcome.sent == []
    assert "Invalid or missing account key" in reply.findtext("message")
    assert reply.find("hostid") is None and reply.find("code_sign_key") is None and reply.find("result") is None
    assert float(reply.findtext("request_delay")) >= 3600


def test_no_app_version_for_the_platform_sends_nothing(project):
    request = dataclasses.replace(client_request("first", project), platforms=("windows_x86_64",))
    outcome, reply = rpc(project, request)
    assert outcome.sent == [] and "No app version of mlds_trainer for windows_x86_64" in reply.findtext("message")
    assert result_row(project)["server_state"] == db.UNSENT


def test_work_request_seconds_bound_the_jobs_sent(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "b", "--stdin"], [name] * 6))
    first = client_request("first", config)  # asks for 1 s: one job, however small
    assert len(handle_request(config, first).sent) == 1
    wants_more = dataclasses.replace(first, work_seconds=2500.0)  # 1e12 flops at 1e9 flops/s: 1000 s each
    assert len(handle_request(config, wants_more).sent) == 3
    assert len(handle_request(config, dataclasses.replace(first, work_seconds=1e9), max_jobs=2).sent) == 2


@pytest.mark.parametrize(
    "body, message",
    [
        (b'<!DOCTYPE r [<!ENTITY x "xx">]><scheduler_request>&x;</scheduler_request>', "DOCTYPE"),
        (b"<scheduler_request><hostid>1</hostid>", "not well-formed"),
        (b"<other/>", "root element"),
        (b"<scheduler_request>" + b" " * (17 << 20) + b"</scheduler_request>", "limit"),
    ],
)
def test_hostile_requests_are_refused(body, message):
    with pytest.raises(ProtocolError, match=message):
        parse_request(body)


def test_absurd_numbers_do_not_break_parsing():
    body = (FIXTURES / "scheduler_request_report.xml").read_bytes()
    body = body.replace(b"<hostid>1</hostid>", b"<hostid>1e400</hostid>").replace(b"<state>5</state>", b"<state>x</state>")
    request = parse_request(body)
    assert request.hostid == 0 and request.results[0].state == 0 and not request.results[0].succeeded


def test_undecodable_stderr_does_not_block_a_report():
    body = (FIXTURES / "scheduler_request_report.xml").read_bytes().replace(b"finished:", b"\xff\x1b[0m finished:")
    (result,) = parse_request(body).results
    assert "\ufffd" in result.stderr_out and "finished:" in result.stderr_out


def test_app_version_files_carry_their_logical_names_as_open_names(tmp_path):
    config = init_project(tmp_path / "proj", app=APP)
    files = []
    for name in ("wrapper_x", "job_x.xml"):
        files.append(tmp_path / name)
        files[-1].write_text(name)
    with pytest.raises(ProjectError, match="logical name for other: not a file of the version"):
        add_app_version(config, AppVersionSpec(APP, 100, "x86_64-pc-linux-gnu", tuple(map(str, files)), logical_names=(("other", "x"),)))
    add_app_version(config, AppVersionSpec(APP, 100, "x86_64-pc-linux-gnu", tuple(map(str, files)), logical_names=(("job_x.xml", "job.xml"),)))
    name = stage_input(config, tmp_path)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu_l", name]))
    _, reply = rpc(config, client_request("first", config))
    refs = reply.find("app_version").findall("file_ref")
    assert [(r.findtext("file_name"), r.findtext("open_name"), r.find("main_program") is not None) for r in refs] == [
        ("wrapper_x", None, True), ("job_x.xml", "job.xml", False),
    ]  # fmt: skip
