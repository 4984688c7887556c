"""The few questions mlds asks BOINC's database, in plain SQL through PyMySQL.

mlds never writes BOINC's tables: workunits enter only through ``bin/create_work``, and the
transitioner, validator and assimilator daemons own every state change. The work generator only
reads: the app's id, the names of the workunits that exist (the source of truth for what has been
created, so a restarted generator never creates a name twice), and the unsent cushion. Column
meanings are BOINC's (``db/schema.sql``, ``db/boinc_db_types.h``): ``result.server_state`` 1
INACTIVE, 2 UNSENT; a workunit the transitioner has not yet visited has no result rows at all.
"""

import pymysql

UNSENT_STATES = (1, 2)  # RESULT_SERVER_STATE_INACTIVE, RESULT_SERVER_STATE_UNSENT


class DatabaseError(RuntimeError):
    """BOINC's database cannot be reached or lacks what mlds needs; the message says which."""


def connect(database):
    """A PyMySQL connection from a ``project_config.Database`` (autocommit: every query sees now)."""
    try:
        return pymysql.connect(**database.connect_arguments(), autocommit=True, connect_timeout=10, charset="utf8mb4")
    except pymysql.MySQLError as exc:
        raise DatabaseError(f"cannot connect to BOINC's database {database.name} on {database.host}:{database.port}: {exc}") from None


def _rows(connection, sql, arguments=()):
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, arguments)
            return cursor.fetchall()
    except pymysql.MySQLError as exc:
        raise DatabaseError(f"query failed: {exc}") from None


def app_id(connection, app_name):
    rows = _rows(connection, "SELECT id FROM app WHERE name = %s", (app_name,))
    if not rows:
        raise DatabaseError(f"BOINC has no app {app_name!r}: add it to project.xml and run bin/xadd")
    return int(rows[0][0])


def workunit_names(connection, appid, prefix):
    """Names of the app's workunits that start with ``prefix`` (e.g. ``DS1-``), as a set."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = _rows(connection, "SELECT name FROM workunit WHERE appid = %s AND name LIKE %s", (appid, pattern))
    return {row[0] for row in rows}


def existing_workunits(connection, appid, names):
    """The subset of ``names`` that BOINC's database already holds for the app."""
    names = sorted(set(names))
    found = set()
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        marks = ", ".join(["%s"] * len(chunk))
        sql = f"SELECT name FROM workunit WHERE appid = %s AND name IN ({marks})"
        found.update(row[0] for row in _rows(connection, sql, (appid, *chunk)))
    return found


def unsent_cushion(connection, appid):
    """Results waiting to be sent, plus workunits that have no results yet (created, not yet
    visited by the transitioner): what a client could be sent soon."""
    unsent = _rows(connection, "SELECT COUNT(*) FROM result WHERE appid = %s AND server_state IN (%s, %s)", (appid, *UNSENT_STATES))
    waiting = _rows(
        connection,
        "SELECT COUNT(*) FROM workunit w WHERE w.appid = %s AND w.error_mask = 0 "
        "AND NOT EXISTS (SELECT 1 FROM result r WHERE r.workunitid = w.id)",
        (appid,),
    )
    return int(unsent[0][0]) + int(waiting[0][0])
