"""The packager's whole path, with real parts: ``mlds package build`` -> ``app-version`` -> ``sign``
(offline, with the project's own code-signing key) -> BOINC's ``bin/update_versions`` -> Debian's
real ``boinc-client`` downloads, verifies and runs the frozen trainer -> a DS1 workunit comes back
valid and is assimilated.

The server is a ``make_project`` project built from BOINC's source (tests/boinc_server_fixtures.py)
with ``mlds server install`` in it, as in tests/test_boinc_server_e2e.py, but with the frozen,
signed trainer instead of a shell launcher running it from source, and one small workunit (one
machine, 2 networks, 2 epochs, no follow-up) to keep the wall time low.

The project's private key is moved out of ``keys/`` before ``update_versions``: the server must use
the ``.sig`` files that ``mlds package sign`` wrote elsewhere, exactly as with a key kept offline.

The frozen bundle is the session's (tests/test_packaging_freeze.py: cached outside CI, built fresh
under CI); the laid-out app version is tests/app_versions.py's.
"""

import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from assimilator.store import DatasetStore
from mlds.boinc_local.errors import ServiceError
from mlds.boinc_local.waiting import tail
from mlds.cli import main
from mlds.package.signing import app_files
from mlds.server.state import ServerState
from tests.app_versions import laid_out_apps
from tests.test_packaging_freeze import session_bundle

pytestmark = [pytest.mark.boinc_server, pytest.mark.boinc_client, pytest.mark.mariadb, pytest.mark.frozen, pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None, reason="needs PyInstaller: pip install 'mlds[package]'"),
              pytest.mark.timeout(1500)]  # fmt: skip

APP, VERSION, PLATFORM = "mlds_trainer", "1.00", "x86_64-pc-linux-gnu"
MACHINE = "SingleInvertMachine"
WORK = ["--networks", "2", "--networks-per-workunit", "2", "--max-epochs", "2", "--epoch-budget", "2",
        "--low-water", "1", "--high-water", "1", "--sleep_interval", "1", "--machine", MACHINE]  # fmt: skip
PUBLISH = ["--networks", "2", "--machine", MACHINE]
VALID, ASSIMILATED = 1, 2


@pytest.fixture(scope="session")
def frozen_bundle(tmp_path_factory):
    return session_bundle(tmp_path_factory)


@pytest.fixture(scope="session")
def laid_out(frozen_bundle, tmp_path_factory):
    """``apps/`` with the unsigned app version (cached next to the bundle outside CI)."""
    return laid_out_apps(frozen_bundle, tmp_path_factory, APP, VERSION, PLATFORM)


@pytest.fixture
def deployed(boinc_project, laid_out, tmp_path):
    """The project with mlds installed and the frozen app version signed offline and registered."""
    project = boinc_project
    install = [sys.executable, "-m", "mlds.cli", "server", "install", str(project.root), "--merge-config",
               "--workgen-args", " ".join(WORK), "--publish-args", " ".join(PUBLISH)]  # fmt: skip
    project.as_service_user(install)
    project.run_bin("xadd")

    # the packager's machine: the project's key, taken offline; the version signed there
    offline = tmp_path / "offline"
    offline.mkdir()
    shutil.move(project.root / "keys" / "code_sign_private", offline / "code_sign_private")
    staged = shutil.copytree(laid_out, tmp_path / "apps")
    signed = CliRunner().invoke(main, ["package", "sign", "--key", str(offline / "code_sign_private"), "--apps", str(staged)])
    assert signed.exit_code == 0, signed.output
    checked = CliRunner().invoke(main, ["package", "verify", "--key", str(project.root / "keys" / "code_sign_public"), "--apps", str(staged)])
    assert checked.exit_code == 0, checked.output

    # the server: copy the tree in, BOINC's update_versions (no private key there)
    target = project.root / "apps" / APP
    shutil.copytree(staged / APP, target, dirs_exist_ok=True)
    project.service_user.chown_tree(project.root / "apps")
    registered = project.run_bin("update_versions", "--noconfirm")
    assert "no code signing private key" not in registered.stdout + registered.stderr
    project.set_config(min_sendwork_interval=1)
    project.start_daemons()
    return project, {os.path.basename(path): Path(f"{path}.sig").read_text() for path in app_files(staged)}


def text(column):
    """A BLOB/TEXT column (PyMySQL gives BOINC's blobs as bytes)."""
    return column.decode() if isinstance(column, bytes) else column


def wait_with_updates(project, client, condition, timeout, what):
    try:
        client.wait_updating(project.url, condition, timeout, what)
    except ServiceError as error:
        results = project.query("SELECT name, server_state, outcome, validate_state, exit_status, stderr_out FROM result")
        pytest.fail(f"{error}\nresults: {results}\n{project.diagnostics(40)}\n== client ==\n{tail(client.log, 80)}")


def test_the_frozen_signed_app_version_runs_in_a_real_client_and_its_result_is_assimilated(deployed, boinc_client, record_property):
    project, signatures = deployed
    started = time.monotonic()
    # update_versions took our signatures, not its own: the app version's XML carries them
    (xml_doc,) = project.query("SELECT xml_doc FROM app_version WHERE version_num = 100")[0]
    xml_doc = text(xml_doc)
    for name, signature in signatures.items():
        assert name in xml_doc and signature.strip() in xml_doc, name

    client = boinc_client(project)
    everything = {MACHINE: [0, 1]}
    wait_with_updates(project, client, lambda: project.query("SELECT COUNT(*) FROM workunit WHERE assimilate_state = 2")[0][0] >= 1,
                      900, "the frozen trainer's workunit to be assimilated")  # fmt: skip
    seconds = time.monotonic() - started

    rows = project.query("SELECT r.validate_state, r.stderr_out, av.version_num, av.plan_class FROM result r "
                         "JOIN app_version av ON r.app_version_id = av.id")  # fmt: skip
    assert rows and all(row[0] == VALID for row in rows), rows
    assert all(row[2:] == (100, "") for row in rows)
    stderr = text(rows[0][1])
    assert "mlds-boot: unpacked mlds_trainer_1.00_x86_64-pc-linux-gnu.tar.gz" in stderr, stderr
    assert "BOINC mode" in stderr, stderr
    _, tables = DatasetStore(ServerState(str(project.root)).store_dir, "DS1").read()
    assert {task: sorted(table.indices.tolist()) for task, table in tables.items()} == everything
    # the bundle was unpacked once into the client's project directory, not into a slot
    unpacked = list((client.directory / "projects").glob("*/mlds_trainer_1.00_x86_64-pc-linux-gnu.unpacked"))
    assert len(unpacked) == 1 and unpacked[0].is_symlink() and (unpacked[0] / "mlds-train" / "mlds-train").exists()
    assert "Signature verification failed" not in client.log.read_text()
    print(f"\nfrozen, signed app version: client attach to assimilated result in {seconds:.0f} s")
    record_property("seconds_to_assimilation", round(seconds, 1))
