"""Read-only questions about a test project: what the daemon scripts and the ``status`` command ask.

``input_path`` is what the validator shim needs and script_validator cannot give it: the tokens
carry the result's output files, its id and run time, but not the workunit's input files. On a real
server the shim would ask the project database the same question.
"""

from mlds.test_server.errors import ProjectError


def input_path(config, result_id, position=0):
    """The download-hierarchy path of input file ``position`` of the workunit of result ``result_id``."""
    connection = config.connect()
    try:
        row = connection.execute(
            "SELECT f.name, f.url FROM result r JOIN wu_file f ON f.wuid = r.wuid WHERE r.id = ? AND f.position = ?",
            (result_id, position),
        ).fetchone()
    finally:
        connection.close()
    if row is None:
        raise ProjectError(f"result {result_id} has no input file {position}")
    if row["url"]:
        raise ProjectError(f"input file {row['name']} of result {result_id} is a remote file, not on this server")
    return config.download_path(row["name"])


def workunit_summaries(config):
    """One dict per workunit, with its results, oldest first."""
    connection = config.connect()
    try:
        units = connection.execute("SELECT * FROM workunit ORDER BY id").fetchall()
        results = connection.execute("SELECT * FROM result ORDER BY id").fetchall()
    finally:
        connection.close()
    by_wu = {}
    for row in results:
        by_wu.setdefault(row["wuid"], []).append(
            {key: row[key] for key in ("id", "name", "server_state", "outcome", "validate_state", "exit_status",
                                       "elapsed_time", "validate_message", "sent_time", "received_time")}
        )  # fmt: skip
    return [
        {
            "id": wu["id"],
            "name": wu["name"],
            "assimilate_state": wu["assimilate_state"],
            "error_mask": wu["error_mask"],
            "canonical_resultid": wu["canonical_resultid"],
            "assimilate_error": wu["assimilate_error"],
            "create_time": wu["create_time"],
            "results": by_wu.get(wu["id"], []),
        }
        for wu in units
    ]


def format_summaries(summaries):
    """A plain-text table: one line per result."""
    lines = [f"{'workunit':<44} {'assimilate':<10} {'result':<48} {'state':<12} {'outcome':<13} {'validate':<8}"]
    for wu in summaries:
        for result in wu["results"] or [{}]:
            lines.append(
                f"{wu['name']:<44} {wu['assimilate_state']:<10} {result.get('name', '-'):<48} "
                f"{result.get('server_state', '-'):<12} {result.get('outcome') or '-':<13} {result.get('validate_state', '-'):<8}"
            )
        if wu["assimilate_error"]:
            lines.append(f"  assimilator stopped: {wu['assimilate_error']}")
    return "\n".join(lines)
