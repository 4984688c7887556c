"""State changes of workunits and results: the parts of BOINC's transitioner a test server needs.

A real project's transitioner daemon reacts to a result's outcome: a failed result (client error or
invalid) gets a replacement until ``max_error_results`` or ``max_total_results`` is reached, after
which the workunit gets an ``error_mask`` and goes to the assimilator's ``--error`` call; a valid
result becomes the canonical result and the workunit goes to the assimilator. Here these run inside
the transaction that recorded the outcome, so no separate daemon is needed.
"""

from mlds.test_server import db
from mlds.test_server.templates import create_result


def workunit_of(connection, wuid):
    return connection.execute("SELECT * FROM workunit WHERE id = ?", (wuid,)).fetchone()


def result_failed(connection, wuid):
    """After a client error or an invalid result: a replacement result, or the workunit errors out."""
    wu = workunit_of(connection, wuid)
    if wu["assimilate_state"] != db.INIT:
        return None
    counts = connection.execute(
        "SELECT COUNT(*) AS total, SUM(outcome = ? OR validate_state = ?) AS errors FROM result WHERE wuid = ?",
        (db.CLIENT_ERROR, db.INVALID, wuid),
    ).fetchone()
    mask = 0
    if (counts["errors"] or 0) >= wu["max_error_results"]:
        mask |= db.WU_ERROR_TOO_MANY_ERROR_RESULTS
    if counts["total"] >= wu["max_total_results"]:
        mask |= db.WU_ERROR_TOO_MANY_TOTAL_RESULTS
    if mask:
        connection.execute(
            "UPDATE workunit SET error_mask = error_mask | ?, assimilate_state = ? WHERE id = ?", (mask, db.READY, wuid)
        )
        return None
    return create_result(connection, wuid, f"{wu['name']}_{counts['total']}", wu["result_template"])


def result_valid(connection, result_id, message=""):
    """The result is valid: it becomes the workunit's canonical result, ready to assimilate."""
    row = connection.execute("SELECT wuid FROM result WHERE id = ?", (result_id,)).fetchone()
    connection.execute(
        "UPDATE result SET validate_state = ?, validate_message = ? WHERE id = ?", (db.VALID, message, result_id)
    )
    connection.execute(
        "UPDATE workunit SET canonical_resultid = ?, assimilate_state = ? WHERE id = ? AND assimilate_state = ?",
        (result_id, db.READY, row["wuid"], db.INIT),
    )


def result_invalid(connection, result_id, message=""):
    row = connection.execute("SELECT wuid FROM result WHERE id = ?", (result_id,)).fetchone()
    connection.execute(
        "UPDATE result SET validate_state = ?, validate_message = ? WHERE id = ?", (db.INVALID, message, result_id)
    )
    return result_failed(connection, row["wuid"])
