"""The HTTP routes on a real loopback socket (mlds.test_server.server)."""

import pathlib
import socket
import threading
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from lxml import etree

from mlds.cli import main
from mlds.test_server.create_work import create_jobs, jobs_from
from mlds.test_server.errors import ProjectError
from mlds.test_server.server import ProjectServer, ServeConfig
from test_test_server_create_work import APP, make_project, stage_input
from test_test_server_scheduler import FIXTURES


@pytest.fixture
def served(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu_b", name]))
    server = ProjectServer(ServeConfig(config.root, port=0, run_daemons=False), config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def fetch(url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_master_page_names_the_scheduler_on_one_line(served):
    status, _, body = fetch(served.urls.master)
    link = f'<link rel="boinc_scheduler" href="{served.urls.base}/cgi-bin/cgi">'
    assert status == 200 and link in body.decode().splitlines()
    assert f"<scheduler>{served.urls.scheduler}</scheduler>" in body.decode()


def test_downloads_whole_and_resumed(served):
    path = served.project.download_path("spec_a.json")
    payload = pathlib.Path(path).read_bytes()
    status, _, body = fetch(served.urls.download("spec_a.json"))
    assert (status, body) == (200, payload)
    status, headers, body = fetch(served.urls.download("spec_a.json"), headers={"Range": "bytes=5-"})
    assert (status, body, headers["Content-Range"]) == (206, payload[5:], f"bytes 5-{len(payload) - 1}/{len(payload)}")
    assert fetch(served.urls.download("spec_a.json"), headers={"Range": "bytes=999-"})[0] == 416


@pytest.mark.parametrize(
    "path",
    [
        "/download/../keys/code_sign_private",
        "/download/%2e%2e/keys/code_sign_private",
        "/download/0/spec_a.json",  # wrong fan-out directory
        "/download/spec_a.json",
        "/download/",
        "/keys/code_sign_private",
        "/db.sqlite",
    ],
)
def test_nothing_outside_the_download_hierarchy_is_served(served, path):
    with socket.create_connection(("127.0.0.1", served.server_port), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        response = b"".join(iter(lambda: connection.recv(65536), b""))
    assert response.startswith(b"HTTP/1.0 404")
    assert b"1024\n" not in response


def test_scheduler_rpc_over_http(served):
    body = (FIXTURES / "scheduler_request_first.xml").read_bytes().replace(
        b"0123456789abcdef0123456789abcdef", served.project.authenticator.encode()
    )
    status, headers, reply = fetch(served.urls.scheduler, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and headers["Content-Type"] == "text/xml"
    root = etree.fromstring(reply)
    assert root.findtext("result/name") == "wu_b_0" and not reply.startswith(b"<?xml")
    assert fetch(served.urls.scheduler, data=b"<!DOCTYPE x><scheduler_request/>")[0] == 400


def test_upload_handler_over_http(served):
    def size_of(name):
        body = f"<data_server_request><get_file_size>{name}</get_file_size></data_server_request>".encode()
        status, _, reply = fetch(served.urls.upload, data=body)
        root = etree.fromstring(reply)
        return status, root.findtext("status"), root.findtext("file_size")

    assert size_of("wu_b_0_0") == (200, "0", "0")
    assert size_of("wu_b_0_9") == (200, "-1", None)


def test_only_loopback_addresses_are_served(tmp_path):
    config = make_project(tmp_path)
    with pytest.raises(ProjectError, match="loopback"):
        ProjectServer(ServeConfig(config.root, host="0.0.0.0", port=0), config)


def test_serve_reports_a_busy_port(tmp_path):
    config = make_project(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = CliRunner().invoke(main, ["test-server", "serve", "--project", config.root, "--port", str(busy.getsockname()[1])])
    assert result.exit_code == 1 and "error:" in result.output


def test_status_command(served):
    result = CliRunner().invoke(main, ["test-server", "status", "--project", served.project.root])
    assert result.exit_code == 0 and "wu_b_0" in result.output and "unsent" in result.output
