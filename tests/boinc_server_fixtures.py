"""pytest fixtures for BOINC's real server, MariaDB and client (``mlds.boinc_local``).

Loaded by ``tests/conftest.py`` (``pytest_plugins``). Each fixture skips, with the reason saying what
to install, on a machine that lacks a part (no ``mariadbd``, no ``apache2``, no build tools, no BOINC
source); under ``CI=true`` that skip fails the run (``tests/conftest.py``). Mark tests that use them
``mariadb``, ``boinc_server`` or ``boinc_client``.

- ``boinc_schema_sql`` (session): Path of BOINC's ``db/schema.sql`` (``constraints.sql`` and
  ``content.sql`` beside it), read from the source tarball without building.
- ``mariadb_server`` (session): a private running MariaDB: ``host``, ``port``, ``user``,
  ``password``, ``params`` (``DbParams``), ``connect(database=None)``.
- ``boinc_db`` (function): a fresh database with BOINC's schema, its own name per test: a
  ``DbParams`` (``host``, ``port``, ``user``, ``password``, ``database``, ``db_host``,
  ``connect()``); dropped afterwards.
- ``boinc_server_build`` (session): Path of the built BOINC server tree (cached across sessions).
- ``boinc_project`` (function): a running ``make_project`` project with Apache up (its master page
  answers), daemons not yet started: a ``LocalProject``; daemons and Apache stopped and its
  database dropped afterwards.
- ``boinc_client`` (function): a factory, ``boinc_client(project, options=ClientOptions())``
  starts a private real client, creates an account and attaches it; returns the ``BoincClient``
  (``authenticators[project.url]`` holds the account key). Clients are stopped afterwards.
- ``boinc_service_user`` (session): the ``ServiceUser`` every service runs as, with the runtime
  directory they share (kept after a session with failures, or with ``MLDS_BOINC_KEEP=1``, for
  the logs).
"""

import contextlib
import os
import secrets
import shutil

import pytest

from mlds.boinc_local.build import BuildConfig, build_boinc_server, extract_schema
from mlds.boinc_local.client import BoincClient, ClientOptions, attach_new_account
from mlds.boinc_local.errors import MissingDependencyError
from mlds.boinc_local.mariadb import MariaDBConfig, MariaDBServer, drop_database, load_boinc_schema
from mlds.boinc_local.project import ProjectOptions, create_project
from mlds.boinc_local.service_user import make_service_user, remove_runtime


@contextlib.contextmanager
def missing_part_skips():
    """A ``MissingDependencyError`` (its message says what to install) becomes a skip."""
    try:
        yield
    except MissingDependencyError as missing:
        pytest.skip(f"this machine lacks a part of the local BOINC server: {missing}")


def unique_name(prefix):
    """A database or project name of its own (letters, digits, '_'), short enough for URLs."""
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def boinc_build_config():
    """Where the BOINC source, patches and build cache are (``MLDS_BOINC_*`` environment)."""
    return BuildConfig.from_environment()


@pytest.fixture(scope="session")
def boinc_schema_sql(tmp_path_factory, boinc_build_config):
    with missing_part_skips():
        files = extract_schema(tmp_path_factory.mktemp("boinc_schema"), boinc_build_config.source)
    return files["schema.sql"]


@pytest.fixture(scope="session")
def boinc_service_user(request):
    with missing_part_skips():
        user = make_service_user()
    yield user
    if request.session.testsfailed or os.environ.get("MLDS_BOINC_KEEP"):
        print(f"\nlocal BOINC server files (logs, projects, client data) kept in {user.runtime}")
    else:
        remove_runtime(user)


@pytest.fixture(scope="session")
def mariadb_server(boinc_service_user):
    server = MariaDBServer(MariaDBConfig(directory=boinc_service_user.runtime / "mariadb"), boinc_service_user)
    with missing_part_skips():
        server.start()
    yield server
    server.stop()


@pytest.fixture
def boinc_db(mariadb_server, boinc_schema_sql):
    name = unique_name("boinc_")
    params = load_boinc_schema(mariadb_server.params, name, schema_dir=boinc_schema_sql.parent)
    yield params
    drop_database(params, name)


@pytest.fixture(scope="session")
def boinc_server_build(boinc_build_config):
    with missing_part_skips():
        return build_boinc_server(config=boinc_build_config)


@pytest.fixture
def boinc_project(boinc_server_build, mariadb_server, boinc_service_user, request):
    name = unique_name("mlds")
    options = ProjectOptions(name=name, long_name=f"mlds test project for {request.node.name}"[:200])
    with missing_part_skips():
        project = create_project(boinc_server_build, mariadb_server.params.with_database(name), boinc_service_user, options)
    yield project
    try:
        project.close(drop_db=True)
    finally:
        failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
        if not failed and not os.environ.get("MLDS_BOINC_KEEP"):
            shutil.rmtree(project.root, ignore_errors=True)


@pytest.fixture
def boinc_client(boinc_service_user):
    clients = []

    def start(project, options=ClientOptions(), email=None, password="volunteer-pw"):
        with missing_part_skips():
            client = BoincClient(boinc_service_user.runtime / "clients" / unique_name("client"), boinc_service_user, options)
        clients.append(client)
        client.start()
        attach_new_account(client, project.url, email or f"{unique_name('v')}@example.test", password, "volunteer")
        return client

    yield start
    for client in clients:
        client.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item (``rep_call``): fixtures keep a failed test's files."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
