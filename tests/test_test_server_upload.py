"""The upload handler: BOINC's protocol, and hostile uploads refused (mlds.test_server.upload)."""

import hashlib
import io
import os

import pytest
from lxml import etree

from mlds.test_server.create_work import create_jobs, jobs_from
from mlds.test_server.scheduler import handle_request
from mlds.test_server.upload import MAX_HEADER, handle_upload
from test_test_server_create_work import APP, make_project, stage_input
from test_test_server_scheduler import client_request

OUTPUT = "wu_b_0_0"


@pytest.fixture
def project(tmp_path):
    """A project whose one result was sent to a host (in progress), with a 1000-byte output limit."""
    config = make_project(tmp_path)
    (tmp_path / "proj" / "templates" / "small_out").write_text(
        "<output_template><file_info><name><OUTFILE_0/></name><max_nbytes>1000</max_nbytes><url><UPLOAD_URL/></url>"
        "</file_info><result><file_ref><file_name><OUTFILE_0/></file_name><open_name>result.h5</open_name></file_ref>"
        "</result></output_template>"
    )
    name = stage_input(config, tmp_path)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu_b", "--result_template", "templates/small_out", name]))
    assert handle_request(config, client_request("first", config)).sent
    return config


def upload_body(name, data, nbytes=None, offset=0, max_nbytes=None):
    """What client/file_xfer.cpp sends: the header, a <data> line, then the bytes from ``offset``."""
    nbytes = len(data) if nbytes is None else nbytes
    header = (
        "<data_server_request>\n    <core_client_major_version>7</core_client_major_version>\n"
        "    <core_client_minor_version>20</core_client_minor_version>\n    <core_client_release>5</core_client_release>\n"
        f"<file_upload>\n<file_info>\n<name>{name}</name>\n<xml_signature>\n</xml_signature>\n"
        f"<max_nbytes>{max_nbytes or nbytes}</max_nbytes>\n</file_info>\n<nbytes>{nbytes}</nbytes>\n"
        f"<md5_cksum>{hashlib.md5(data).hexdigest()}</md5_cksum>\n<offset>{offset}</offset>\n<data>\n"
    )
    return header.encode() + data[offset:]


def size_body(name):
    return (
        "<data_server_request>\n    <core_client_major_version>7</core_client_major_version>\n"
        f"    <get_file_size>{name}</get_file_size>\n</data_server_request>\n"
    ).encode()


def post(config, body, content_length=None):
    reply = etree.fromstring(handle_upload(config, io.BytesIO(body), len(body) if content_length is None else content_length))
    return int(reply.findtext("status")), reply.findtext("message") or "", reply.findtext("file_size")


def stored(config, name=OUTPUT):
    path = config.upload_path(name)
    return open(path, "rb").read() if os.path.exists(path) else None


def test_get_file_size_then_upload_then_resume(project):
    data = bytes(range(256)) * 3
    assert post(project, size_body(OUTPUT)) == (0, "", "0")
    whole = upload_body(OUTPUT, data)
    assert post(project, whole[:-268], content_length=len(whole))[0] == 1  # connection lost after 500 bytes
    assert post(project, size_body(OUTPUT)) == (0, "", "500")
    assert post(project, upload_body(OUTPUT, data, offset=500))[0] == 0
    assert stored(project) == data
    assert post(project, upload_body(OUTPUT, data, offset=300))[0] == 0  # resumed again from 300: same file
    assert stored(project) == data
    assert post(project, size_body(OUTPUT))[2] == str(len(data))


def test_a_short_body_is_transient_and_keeps_what_arrived(project):
    data = b"z" * 800
    body = upload_body(OUTPUT, data)
    status, message, _ = post(project, body[:-300], content_length=len(body))  # the client's connection broke
    assert status == 1 and "EOF" in message
    assert stored(project) == data[:500]


def test_offset_beyond_what_the_server_holds_is_transient(project):
    status, message, _ = post(project, upload_body(OUTPUT, b"a" * 600, offset=400))
    assert (status, "< offset" in message) == (1, True)


@pytest.mark.parametrize(
    "name, message",
    [
        ("../../keys/code_sign_private", "invalid filename"),
        ("/etc/passwd", "invalid filename"),
        ("wu_b_0_0/../x", "invalid filename"),
        ("..", "invalid filename"),
        ("wu_b_0_1", "not an output file"),
        ("spec_a.json", "not an output file"),
        ("", "Missing name"),
    ],
)
def test_names_other_than_the_results_outputs_are_refused(project, name, message):
    status, text, _ = post(project, upload_body(name, b"evil"))
    assert status == -1 and message in text
    assert not any(files for _, _, files in os.walk(project.upload_dir))


def test_size_above_the_templates_limit_is_refused_whatever_the_client_claims(project):
    status, message, _ = post(project, upload_body(OUTPUT, b"b" * 1001, max_nbytes=10**9))
    assert status == -1 and "exceeds limit" in message
    assert stored(project) is None


def test_a_body_longer_than_announced_is_refused(project):
    body = upload_body(OUTPUT, b"c" * 100) + b"more bytes than nbytes"
    status, message, _ = post(project, body)
    assert status == -1 and "announces" in message and stored(project) is None


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<data_server_request><file_upload><file_info><name>x</name></file_info>", "Missing <data> tag"),
        (b"<data_server_request><file_upload>" + b" " * MAX_HEADER, "too long"),
        (b"<file_upload><name>wu_b_0_0</name><nbytes>-5</nbytes><data>\n", "non-negative"),
        (b"<file_upload><name>wu_b_0_0</name><nbytes>lots</nbytes><data>\n", "not a number"),
        (b"<file_upload><name>wu_b_0_0</name><nbytes>1e400</nbytes><data>\n", "non-negative"),
        (b"<file_upload><name>wu_b_0_0</name><data>\n", "missing <nbytes>"),
        (b"<data_server_request><get_file_size>../x</get_file_size></data_server_request>", "invalid filename"),
        (b'<!DOCTYPE a [<!ENTITY e "e">]><data_server_request><get_file_size>&e;</get_file_size></data_server_request>', "DOCTYPE"),
    ],
)
def test_malformed_requests_are_refused(project, body, message):
    status, text, _ = post(project, body)
    assert status == -1 and message in text


def test_no_content_length_is_refused(project):
    assert post(project, upload_body(OUTPUT, b"d"), content_length=-1)[:2] == (-1, "a Content-Length is required")


def test_a_result_no_longer_in_progress_accepts_only_a_repeat(project):
    data = b"e" * 100
    assert post(project, upload_body(OUTPUT, data))[0] == 0
    connection = project.connect()
    connection.execute("UPDATE result SET server_state = 'over'")
    assert post(project, upload_body(OUTPUT, data))[0] == 0  # the same file again: fine, nothing written
    status, message, _ = post(project, upload_body(OUTPUT, b"f" * 50))
    assert status == -1 and "not in progress" in message and stored(project) == data


def test_a_symlink_in_the_upload_hierarchy_is_not_followed(project, tmp_path):
    target = tmp_path / "outside"
    target.write_bytes(b"keep")
    path = project.upload_path(OUTPUT)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)
    status, _, _ = post(project, upload_body(OUTPUT, b"g" * 10))
    assert status != 0 and target.read_bytes() == b"keep"
