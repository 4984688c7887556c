"""``script_validator`` and ``script_assimilator``, emulated exactly as far as a script can tell.

The project's ``config.xml`` holds the daemon lines an admin would put in a real project, e.g.

    script_validator --app mlds_trainer --init_script "mlds_validate files result_id"
    script_assimilator --app mlds_trainer --script "mlds_assimilate wu_id files"

and this module runs what those daemons would run (sched/script_validator.cpp,
sched/script_assimilator.cpp): the script string is split on single spaces; its first word is the
script, called as ``../bin/<script>`` with the working directory ``bin/``; the other words are
tokens, replaced in order, and unknown tokens are dropped:

* validator (init script): ``files`` (each output file's path in the upload hierarchy),
  ``result_id``, ``runtime`` (``%f``); no tokens means ``files``;
* assimilator: ``files``, ``files2`` (path and logical name pairs), ``wu_id``, ``wu_name``,
  ``result_id``, ``runtime``, ``batch_id``; no tokens means ``wu_id files``. A workunit that
  failed (no canonical result) is passed as ``--error <error_mask> <wu_name> <wu_id> <batch>``.

The command line is run through ``/bin/sh -c`` (BOINC calls ``system()``). Exit codes: validator 0
valid, 3 (``VAL_RESULT_TRANSIENT_ERROR``) try again later, anything else (or death by a signal)
invalid; assimilator 0 done, anything else is an error that **stops the assimilator daemon**
(sched/assimilator.cpp exits), leaving the workunit unassimilated until an admin restarts it.
``compare_script`` (quorums above 1) is not supported: each result is judged by the init script.
"""

import logging
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass

from mlds.test_server import db, transitions
from mlds.test_server.errors import ProjectError

VAL_RESULT_TRANSIENT_ERROR = 3
SCRIPT_TIMEOUT = 3600.0
TRANSIENT_RETRY_SECONDS = 30.0
log = logging.getLogger("mlds.test_server")


@dataclass(frozen=True)
class ScriptDaemon:
    """One ``<daemon><cmd>`` line: which program, which app, and the script with its tokens."""

    program: str  # "script_validator" or "script_assimilator"
    app: str
    script: tuple  # (name, token, ...)


def parse_daemon(line):
    """A ``ScriptDaemon`` from a config.xml command line; None for other daemons."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ProjectError(f"daemon command {line!r}: {exc}") from None
    if not words or words[0] not in ("script_validator", "script_assimilator"):
        return None
    options = _options(words[1:])
    script_option = "--init_script" if words[0] == "script_validator" else "--script"
    if words[0] == "script_validator" and "--compare_script" in options:
        raise ProjectError("the test server runs only --init_script (each result is validated alone)")
    script = [word for word in options.get(script_option, "").split(" ") if word]
    if not options.get("--app") or not script:
        raise ProjectError(f"daemon command {line!r} needs --app and {script_option}")
    if "/" in script[0]:
        raise ProjectError(f"daemon command {line!r}: the script must be a name in bin/")
    return ScriptDaemon(words[0], options["--app"], tuple(script))


def _options(words):
    options, index = {}, 0
    while index < len(words):
        word = words[index]
        if word.startswith("--") and index + 1 < len(words) and not words[index + 1].startswith("--"):
            options[word] = words[index + 1]
            index += 2
        else:
            options[word] = ""
            index += 1
    return options


def validator_command(script, paths, result_id, runtime):
    """The ``system()`` string script_validator builds for an init script."""
    name, *tokens = script
    command = f"../bin/{name}"
    for token in tokens or ["files"]:
        if token == "files":
            command += "".join(f" {path}" for path in paths)
        elif token == "result_id":
            command += f" {result_id}"
        elif token == "runtime":
            command += f" {runtime:f}"
    return command


def assimilator_command(script, wu, result=None, files=()):
    """The ``system()`` string script_assimilator builds; ``files`` are ``(path, logical_name)``."""
    name, *tokens = script
    if result is None:
        return f"../bin/{name} --error {wu['error_mask']} {wu['name']} {wu['id']} {wu['batch']}"
    values = {
        "files": "".join(f" {path}" for path, _ in files),
        "files2": "".join(f" {path} {logical}" for path, logical in files),
        "wu_id": f" {wu['id']}",
        "wu_name": f" {wu['name']}",
        "result_id": f" {result['id']}",
        "runtime": f" {result['elapsed_time']:f}",
        "batch_id": f" {wu['batch']}",
    }
    return f"../bin/{name}" + "".join(values.get(token, "") for token in tokens or ["wu_id", "files"])


def run_script(command, bin_dir, timeout=SCRIPT_TIMEOUT):
    """Run ``command`` as ``system()`` would, from ``bin_dir``; returns ``(returncode, output)``."""
    try:
        completed = subprocess.run(
            ["/bin/sh", "-c", command], cwd=bin_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, f"killed after {timeout:.0f} s"
    return completed.returncode, completed.stdout.decode("utf-8", errors="replace").strip()


def validator_verdict(returncode):
    """script_validator's reading of an init script's exit: "valid", "transient" or "invalid"."""
    if returncode == 0:
        return "valid"
    if returncode == VAL_RESULT_TRANSIENT_ERROR:
        return "transient"
    return "invalid"


class DaemonRunner:
    """Runs the configured validator and assimilator on pending work, one pass at a time."""

    def __init__(self, config, clock=None):
        self.config = config
        self.clock = clock or time.monotonic
        daemons = [d for d in (parse_daemon(line) for line in config.daemons) if d]
        self.validators = [d for d in daemons if d.program == "script_validator"]
        self.assimilators = [d for d in daemons if d.program == "script_assimilator"]
        self.assimilator_stopped = ""  # the reason, once an assimilator script failed
        self.retry_after = {}  # result id -> clock value (transient validator errors)
        self.wake = threading.Event()

    def run_once(self):
        """Validate every pending result, then assimilate every ready workunit; returns how many were handled."""
        connection = self.config.connect()
        try:
            handled = sum(self._validate(connection, daemon) for daemon in self.validators)
            if not self.assimilator_stopped:
                handled += sum(self._assimilate(connection, daemon) for daemon in self.assimilators)
            return handled
        finally:
            connection.close()

    def run_forever(self, stop, interval=2.0):
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - a daemon logs and carries on, like BOINC's
                log.exception("daemon pass failed")
                busy = 0
            if not busy:
                self.wake.wait(interval)
                self.wake.clear()

    def _validate(self, connection, daemon):
        rows = connection.execute(
            "SELECT r.* FROM result r JOIN workunit w ON w.id = r.wuid JOIN app a ON a.id = w.appid"
            " WHERE a.name = ? AND r.server_state = ? AND r.outcome = ? AND r.validate_state = ? ORDER BY r.id",
            (daemon.app, db.OVER, db.SUCCESS, db.INIT),
        ).fetchall()
        handled = 0
        for result in rows:
            if self.retry_after.get(result["id"], 0) > self.clock():
                continue
            self._validate_result(connection, daemon, result)
            handled += 1
        return handled

    def _validate_result(self, connection, daemon, result):
        paths = [self.config.upload_path(f["name"]) for f in self._files(connection, result["id"])]
        command = validator_command(daemon.script, paths, result["id"], result["elapsed_time"])
        returncode, output = run_script(command, self.config.bin_dir)
        verdict = validator_verdict(returncode)
        log.info("[RESULT#%d %s] %s -> %s (exit %d) %s", result["id"], result["name"], command, verdict, returncode, output)
        if verdict == "transient":
            self.retry_after[result["id"]] = self.clock() + TRANSIENT_RETRY_SECONDS
            return
        with db.transaction(connection):
            if verdict == "valid":
                transitions.result_valid(connection, result["id"], output[-4000:])
            else:
                transitions.result_invalid(connection, result["id"], output[-4000:])

    def _files(self, connection, result_id):
        return connection.execute(
            "SELECT name, open_name FROM result_file WHERE result_id = ? ORDER BY position", (result_id,)
        ).fetchall()

    def _assimilate(self, connection, daemon):
        rows = connection.execute(
            "SELECT w.* FROM workunit w JOIN app a ON a.id = w.appid WHERE a.name = ? AND w.assimilate_state = ?"
            " ORDER BY w.id",
            (daemon.app, db.READY),
        ).fetchall()
        for wu in rows:
            if not self._assimilate_workunit(connection, daemon, wu):
                return 0
        return len(rows)

    def _assimilate_workunit(self, connection, daemon, wu):
        result = None
        if wu["canonical_resultid"]:
            result = connection.execute("SELECT * FROM result WHERE id = ?", (wu["canonical_resultid"],)).fetchone()
        files = []
        if result is not None:
            files = [(self.config.upload_path(f["name"]), f["open_name"]) for f in self._files(connection, result["id"])]
        command = assimilator_command(daemon.script, wu, result, files)
        returncode, output = run_script(command, self.config.bin_dir)
        log.info("[WU#%d %s] %s -> exit %d %s", wu["id"], wu["name"], command, returncode, output)
        if returncode != 0:
            self.assimilator_stopped = f"{command} exited {returncode}: {output[-2000:]}"
            log.critical("assimilator stopped: %s", self.assimilator_stopped)
            with db.transaction(connection):
                connection.execute("UPDATE workunit SET assimilate_error = ? WHERE id = ?", (self.assimilator_stopped, wu["id"]))
            return False
        with db.transaction(connection):
            connection.execute("UPDATE workunit SET assimilate_state = ?, assimilate_error = '' WHERE id = ?", (db.DONE, wu["id"]))
        return True
