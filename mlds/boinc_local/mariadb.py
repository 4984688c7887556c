"""A private MariaDB server for one test session or one developer's local BOINC project.

BOINC's server keeps all its state in MySQL/MariaDB, and the software that plugs into it (work
generators, validators, monitors) must be tested against the real thing, not SQLite. The system's
MariaDB service is no good for that: it may not run, its root account is the machine owner's, and
tests must not touch its data. So each session gets its own server:

- ``mariadb-install-db`` into a private data directory, as the service user (``service_user``);
- ``mariadbd --no-defaults`` (the system's ``my.cnf`` is not read), listening on 127.0.0.1 only, on a
  free port, with its own socket, pid file and error log, and without the fsyncs a test database does
  not need;
- readiness is a successful PyMySQL connection, polled against a deadline;
- the caller's OS account may administer it over the socket (``unix_socket`` authentication), and a
  password account with ``GRANT ALL`` is what BOINC (``config.xml``'s ``db_user``/``db_passwd``) and
  the tests use over TCP;
- ``stop()`` sends SIGTERM (MariaDB's clean shutdown) and waits for the process to exit.

``load_boinc_schema`` creates a database the way ``make_project`` does (utf8mb4, then BOINC's own
``schema.sql``, ``constraints.sql`` and ``content.sql`` from the source tarball, unbuilt).
"""

import os
import pwd
import secrets
import signal
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pymysql

from mlds.boinc_local.build import SCHEMA_FILES, extract_schema
from mlds.boinc_local.deps import require_programs
from mlds.boinc_local.errors import BoincLocalError, ServiceError
from mlds.boinc_local.waiting import free_port, tail, wait_until

MARIADB_PROGRAMS = {"mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server"}
# A test database loses nothing worth keeping in a crash; fsync per commit would make BOINC's
# daemons and the schema load several times slower.
FAST_UNSAFE_OPTIONS = (
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-buffer-pool-size=64M",
    "--skip-log-bin",
)


@dataclass(frozen=True)
class DbParams:
    """How to reach one MariaDB account (and optionally one database) over TCP."""

    host: str
    port: int
    user: str
    password: str
    database: str | None = None

    @property
    def db_host(self):
        """``host:port``, as BOINC's ``config.xml`` ``<db_host>`` takes it (C++, Python and PHP)."""
        return f"{self.host}:{self.port}"

    def with_database(self, database):
        return replace(self, database=database)

    def connect(self, database=None, **kwargs):
        """A PyMySQL connection (autocommit) to ``database``, default this object's."""
        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            database=database or self.database, autocommit=True, connect_timeout=10, **kwargs,
        )  # fmt: skip


@dataclass(frozen=True)
class MariaDBConfig:
    """``directory``: holds datadir, socket, pid and log (reachable by ``service_user``)."""

    directory: Path
    port: int = 0  # 0: a free port
    db_user: str = "mlds"
    db_password: str = ""  # empty: a random one
    start_timeout: float = 120.0


class MariaDBServer:
    """A running private ``mariadbd``; ``host``, ``port``, ``user``, ``password``, ``connect()``."""

    host = "127.0.0.1"

    def __init__(self, config, service_user):
        self.config, self.service_user = config, service_user
        self.directory = Path(config.directory)
        self.datadir = self.directory / "data"
        self.socket = self.directory / "mysqld.sock"
        self.log = self.directory / "mariadb.log"
        self.port = config.port or free_port()
        self.user = config.db_user
        self.password = config.db_password or secrets.token_hex(12)
        self.process = None

    @property
    def params(self):
        return DbParams(self.host, self.port, self.user, self.password)

    def connect(self, database=None, **kwargs):
        return self.params.connect(database, **kwargs)

    def start(self):
        require_programs(MARIADB_PROGRAMS)
        self.service_user.make_dir(self.directory)
        self._install()
        self._launch()
        wait_until(self._socket_answers, self.config.start_timeout, "mariadbd to accept connections", log=self.log)
        self._create_account()
        return self

    def _install(self):
        install = [
            "mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--skip-test-db",
            "--auth-root-authentication-method=socket", f"--auth-root-socket-user={_caller_name()}",
        ]  # fmt: skip
        done = self.service_user.run(install, check=False, cwd=self.directory)
        if done.returncode != 0:
            (self.directory / "install-db.log").write_text(done.stdout + done.stderr)
            raise ServiceError(f"mariadb-install-db exited {done.returncode}", self.directory / "install-db.log")

    def _launch(self):
        command = [
            "mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
            f"--pid-file={self.directory / 'mariadbd.pid'}", f"--log-error={self.log}", *FAST_UNSAFE_OPTIONS,
        ]  # fmt: skip
        self.process = self.service_user.popen(
            command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _socket_answers(self):
        if self.process.poll() is not None:
            raise ServiceError(f"mariadbd exited {self.process.returncode} while starting:\n{tail(self.log)}", self.log)
        try:
            self._admin_connection().close()
            return True
        except pymysql.MySQLError:
            return False

    def _admin_connection(self):
        """The caller's OS account over the socket (unix_socket authentication: no password)."""
        return pymysql.connect(unix_socket=str(self.socket), user=_caller_name(), autocommit=True, connect_timeout=5)

    def _create_account(self):
        with self._admin_connection() as connection, connection.cursor() as cursor:
            for host in ("127.0.0.1", "localhost"):
                cursor.execute(f"CREATE USER '{self.user}'@'{host}' IDENTIFIED BY %s", (self.password,))
                cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'{host}' WITH GRANT OPTION")

    def stop(self, timeout=60):
        """SIGTERM (clean shutdown), then wait; SIGKILL if it does not exit within ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ServiceError(f"mariadbd did not stop within {timeout} s of SIGTERM; killed", self.log) from None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _caller_name():
    return pwd.getpwuid(os.geteuid()).pw_name


def start_mariadb(directory, service_user, **options):
    """Start a private server in ``directory``; returns the running ``MariaDBServer``."""
    return MariaDBServer(MariaDBConfig(directory=Path(directory), **options), service_user).start()


def check_database_name(name):
    if not name.replace("_", "").isalnum() or len(name) > 64:
        raise BoincLocalError(f"database name {name!r}: use letters, digits and '_' (at most 64)")
    return name


def load_boinc_schema(params, database, source=None, schema_dir=None):
    """Create ``database`` (dropped first if it exists) and load BOINC's schema into it, as
    ``make_project`` does; returns ``params`` for that database.

    ``schema_dir`` may hold already extracted SQL files (``extract_schema``); without it they are
    read from ``source`` (default: the configured BOINC source)."""
    check_database_name(database)
    if schema_dir is None:
        with tempfile.TemporaryDirectory(prefix="boinc-schema-") as extracted:
            extract_schema(extracted, source)
            return load_boinc_schema(params, database, schema_dir=extracted)
    with params.connect(database="") as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cursor.execute(f"USE `{database}`")
        for name in SCHEMA_FILES:
            _execute_script(cursor, Path(schema_dir) / name)
    return params.with_database(database)


def _execute_script(cursor, path):
    """Statements split at ``;`` exactly as BOINC's ``py/Boinc/database.py`` does (its files have
    no ``;`` inside strings or comments)."""
    for statement in Path(path).read_text().split(";"):
        if statement.strip():
            cursor.execute(statement)


def drop_database(params, database):
    with params.connect(database="") as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{check_database_name(database)}`")
