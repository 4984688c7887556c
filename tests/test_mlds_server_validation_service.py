"""The validation service behind ``bin/mlds_validate``: same verdicts as the script alone, without
starting Python and torch per result; when it is down, the script validates by itself."""

import subprocess
import sys
import time

import pytest

from mlds.server.install import InstallConfig, install
from mlds.server.validation_client import ask_service, socket_path
from tests.test_assimilator_boinc_script import project_with_upload
from tests.test_mlds_server_install import CONFIG_XML


@pytest.fixture
def served(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    root = tmp_path / "project"
    (root / "bin").mkdir()
    (root / "config.xml").write_text(CONFIG_XML.format(root=root))
    (root / "project.xml").write_text("<boinc/>\n")
    install(InstallConfig(str(root)))
    service = subprocess.Popen([root / "bin" / "mlds_validate_service"], cwd=root, stdout=subprocess.PIPE, text=True)
    line = service.stdout.readline()  # "Starting: validation service on ..." once it listens
    assert "Starting" in line, line
    yield root, upload, service
    service.send_signal(subprocess.signal.SIGHUP)
    service.wait(timeout=30)


def script(root, *arguments):
    return subprocess.run([root / "bin" / "mlds_validate", *map(str, arguments)], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_service_gives_the_scripts_verdicts(served):
    root, upload, _ = served
    code, log = ask_service(str(root), [str(upload), "11", "20.0"])
    assert code == 0 and "valid: 2 networks" in log
    truncated = upload.with_name(upload.name.replace("_r1234567_", "_r7654321_"))
    truncated.write_bytes(upload.read_bytes()[:3000])
    code, log = ask_service(str(root), [str(truncated), "12", "20.0"])
    assert code == 1 and "invalid" in log
    assert ask_service(str(root), [])[0] == 3  # BOINC's token bug: transient


def test_the_installed_script_uses_the_service_and_is_faster_than_starting_torch(served):
    root, upload, service = served
    started = time.monotonic()
    through_service = script(root, upload, "13", "20.0")
    service_seconds = time.monotonic() - started
    assert through_service.returncode == 0, through_service.stderr
    service.send_signal(subprocess.signal.SIGHUP)
    service.wait(timeout=30)
    assert ask_service(str(root), [str(upload)]) is None  # nobody listens: the script validates itself
    started = time.monotonic()
    alone = script(root, upload, "14", "20.0")
    alone_seconds = time.monotonic() - started
    assert alone.returncode == 0 and "valid: 2 networks" in alone.stderr
    print(f"\nmlds_validate: {service_seconds:.2f} s through the service, {alone_seconds:.2f} s alone")


def test_a_stale_socket_of_a_killed_service_is_replaced(tmp_path, small_result):
    state, spec, upload = project_with_upload(tmp_path, *small_result)
    root = tmp_path / "project"
    (root / "config.xml").write_text(CONFIG_XML.format(root=root))
    open(socket_path(str(root)), "w").close()  # what kill -9 leaves
    assert ask_service(str(root), [str(upload)]) is None
    service = subprocess.Popen([sys.executable, "-m", "mlds.cli", "server", "validate-service", "--project", root],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert "Starting" in service.stdout.readline()
        assert ask_service(str(root), [str(upload), "1", "9.0"])[0] == 0
    finally:
        service.send_signal(subprocess.signal.SIGHUP)
        service.wait(timeout=30)
