"""The test project's state: a small SQLite database standing in for BOINC's MySQL tables.

Why SQLite: a test server has one writer process (its HTTP threads and daemon thread serialise on
SQLite's lock), needs transactions so a result is never sent twice, and must survive being killed
(every state change is one committed transaction). The tables keep BOINC's names and the columns the
protocol needs (``app``, ``app_version``, ``workunit``, ``result``, ``host``), with the file lists
that BOINC keeps in XML blobs split into ``app_version_file``, ``wu_file`` and ``result_file`` rows.

States follow BOINC's: a result is ``unsent`` -> ``in_progress`` (sent to a host) -> ``over`` with
an outcome (``success``, ``client_error``); the validator moves ``validate_state`` from ``init`` to
``valid`` or ``invalid``; a workunit's ``assimilate_state`` goes ``init`` -> ``ready`` -> ``done``.
"""

import contextlib
import sqlite3

SCHEMA_VERSION = 1

# result.server_state
UNSENT, IN_PROGRESS, OVER = "unsent", "in_progress", "over"
# result.outcome
SUCCESS, CLIENT_ERROR = "success", "client_error"
# result.validate_state
INIT, VALID, INVALID = "init", "valid", "invalid"
# workunit.assimilate_state (INIT shared)
READY, DONE = "ready", "done"
# workunit.error_mask bits (BOINC's WU_ERROR_*)
WU_ERROR_TOO_MANY_ERROR_RESULTS = 2
WU_ERROR_TOO_MANY_TOTAL_RESULTS = 8

SCHEMA = """
CREATE TABLE IF NOT EXISTS app (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, user_friendly_name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_version (
    id INTEGER PRIMARY KEY, appid INTEGER NOT NULL REFERENCES app(id), version_num INTEGER NOT NULL,
    platform TEXT NOT NULL, plan_class TEXT NOT NULL DEFAULT '', api_version TEXT NOT NULL,
    avg_ncpus REAL NOT NULL, cmdline TEXT NOT NULL DEFAULT '',
    UNIQUE (appid, version_num, platform, plan_class));
CREATE TABLE IF NOT EXISTS app_version_file (
    app_version_id INTEGER NOT NULL REFERENCES app_version(id), position INTEGER NOT NULL,
    name TEXT NOT NULL, logical_name TEXT NOT NULL DEFAULT '', main_program INTEGER NOT NULL,
    copy_file INTEGER NOT NULL DEFAULT 0, nbytes INTEGER NOT NULL, md5 TEXT NOT NULL,
    signature TEXT NOT NULL, PRIMARY KEY (app_version_id, position));
CREATE TABLE IF NOT EXISTS workunit (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, appid INTEGER NOT NULL REFERENCES app(id),
    command_line TEXT NOT NULL DEFAULT '', extra_xml TEXT NOT NULL DEFAULT '',
    rsc_fpops_est REAL NOT NULL, rsc_fpops_bound REAL NOT NULL, rsc_memory_bound REAL NOT NULL,
    rsc_disk_bound REAL NOT NULL, delay_bound INTEGER NOT NULL, max_error_results INTEGER NOT NULL,
    max_total_results INTEGER NOT NULL, priority INTEGER NOT NULL DEFAULT 0,
    batch INTEGER NOT NULL DEFAULT 0, result_template TEXT NOT NULL,
    canonical_resultid INTEGER NOT NULL DEFAULT 0, error_mask INTEGER NOT NULL DEFAULT 0,
    assimilate_state TEXT NOT NULL DEFAULT 'init', assimilate_error TEXT NOT NULL DEFAULT '',
    create_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS wu_file (
    wuid INTEGER NOT NULL REFERENCES workunit(id), position INTEGER NOT NULL, name TEXT NOT NULL,
    open_name TEXT NOT NULL, copy_file INTEGER NOT NULL DEFAULT 0, url TEXT NOT NULL DEFAULT '',
    nbytes INTEGER NOT NULL, md5 TEXT NOT NULL, extra_xml TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (wuid, position));
CREATE TABLE IF NOT EXISTS host (
    id INTEGER PRIMARY KEY, platform TEXT NOT NULL, create_time REAL NOT NULL, rpc_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS result (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, wuid INTEGER NOT NULL REFERENCES workunit(id),
    server_state TEXT NOT NULL DEFAULT 'unsent', outcome TEXT NOT NULL DEFAULT '',
    validate_state TEXT NOT NULL DEFAULT 'init', validate_message TEXT NOT NULL DEFAULT '',
    hostid INTEGER NOT NULL DEFAULT 0, app_version_id INTEGER NOT NULL DEFAULT 0,
    sent_time REAL NOT NULL DEFAULT 0, received_time REAL NOT NULL DEFAULT 0,
    report_deadline REAL NOT NULL DEFAULT 0, exit_status INTEGER NOT NULL DEFAULT 0,
    elapsed_time REAL NOT NULL DEFAULT 0, cpu_time REAL NOT NULL DEFAULT 0,
    stderr_out TEXT NOT NULL DEFAULT '', result_xml TEXT NOT NULL DEFAULT '',
    create_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS result_file (
    result_id INTEGER NOT NULL REFERENCES result(id), position INTEGER NOT NULL,
    name TEXT UNIQUE NOT NULL, open_name TEXT NOT NULL, max_nbytes INTEGER NOT NULL,
    url TEXT NOT NULL, copy_file INTEGER NOT NULL DEFAULT 0, extra_xml TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (result_id, position));
CREATE INDEX IF NOT EXISTS result_by_state ON result (server_state, outcome, validate_state);
"""


def connect(path):
    """A connection with autocommit off only inside ``transaction``; rows behave like dicts."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA journal_mode = WAL")
    return connection


def create_schema(connection):
    connection.executescript(SCHEMA)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def schema_version(connection):
    return connection.execute("PRAGMA user_version").fetchone()[0]


@contextlib.contextmanager
def transaction(connection):
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one writer at a time."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def insert(connection, table, **values):
    """Insert one row; returns its id."""
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    cursor = connection.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))
    return cursor.lastrowid
