"""The scheduler RPC: read a client's ``<scheduler_request>``, record its reports, hand out work.

What one RPC does here, in one database transaction (reference §4.1):

1. check the account key (``<authenticator>``): a wrong one gets BOINC's "Invalid or missing
   account key" message and nothing else;
2. give a new host (``<hostid>`` 0) an id;
3. for every reported ``<result>``: ack it (always, or the client reports it again on every RPC),
   and if it was sent to this host and is still in progress, record its outcome. A result is a
   success only if its state is "files uploaded" (5), its exit status 0 and every output file is on
   the server with the size and md5 the client reports; anything else is a client error, which
   the transitioner turns into a replacement result or a failed workunit;
4. if the client asks for work, send unsent results, oldest first (higher priority first), while
   their estimated run time (``rsc_fpops_est`` / the host's flops) is below what it asked for, at
   least one and at most ``max_jobs``. A result is sent only with an app version for one of the
   client's platforms (the highest version number; plan classes are not matched here).

The reply itself is built by ``mlds.test_server.reply``.
"""

import hmac
import os
import time
from dataclasses import dataclass, field

from mlds.test_server import db, keys, transitions
from mlds.test_server.errors import ProtocolError
from mlds.test_server.xmlsafe import parse_xml

RESULT_FILES_UPLOADED = 5  # the client's RESULT_FILES_UPLOADED state
MAX_STDERR = 64 << 10
MAX_REQUEST_BYTES = 16 << 20


@dataclass(frozen=True)
class ReportedFile:
    name: str
    nbytes: float
    md5: str


@dataclass(frozen=True)
class ReportedResult:
    name: str
    state: int
    exit_status: int
    elapsed_time: float
    cpu_time: float
    stderr_out: str
    files: tuple

    @property
    def succeeded(self):
        return self.state == RESULT_FILES_UPLOADED and self.exit_status == 0


@dataclass(frozen=True)
class SchedulerRequest:
    authenticator: str
    hostid: int
    platforms: tuple
    has_code_sign_key: bool
    work_seconds: float
    p_fpops: float
    client_version: tuple
    results: tuple = ()


@dataclass
class RpcOutcome:
    """What the reply must say: built by ``handle_request``, written by ``reply.build_reply``."""

    authenticated: bool = True
    hostid: int = 0
    new_host: bool = False
    acks: list = field(default_factory=list)
    sent: list = field(default_factory=list)  # result ids
    messages: list = field(default_factory=list)  # (priority, text)
    send_code_sign_key: bool = False


def _float(element, path, default=0.0):
    try:
        return float(element.findtext(path) or default)
    except ValueError:
        return default


def _int(element, path, default=0):
    try:
        return int(float(element.findtext(path) or default))
    except (ValueError, OverflowError):
        return default


def parse_request(body):
    """A ``SchedulerRequest`` from the POSTed bytes; raises ``ProtocolError`` if they are not one."""
    root = parse_xml(body, "scheduler request", limit=MAX_REQUEST_BYTES)
    if root.tag != "scheduler_request":
        raise ProtocolError(f"scheduler request: root element is <{root.tag}>")
    platforms = [root.findtext("platform_name") or ""] + [p.findtext("name") or "" for p in root.findall("alt_platform")]
    version = tuple(_int(root, f"core_client_{part}") for part in ("major_version", "minor_version", "release"))
    return SchedulerRequest(
        authenticator=(root.findtext("authenticator") or "").strip(),
        hostid=_int(root, "hostid"),
        platforms=tuple(p.strip() for p in platforms if p.strip()),
        has_code_sign_key=bool((root.findtext("code_sign_key") or "").strip()),
        work_seconds=max(_float(root, "work_req_seconds"), _float(root, "cpu_req_secs")),
        p_fpops=_float(root, "host_info/p_fpops", 1e9) or 1e9,
        client_version=version,
        results=tuple(_reported(r) for r in root.findall("result")),
    )


def _reported(element):
    files = tuple(
        ReportedFile(f.findtext("name") or "", _float(f, "nbytes", -1), (f.findtext("md5_cksum") or "").strip())
        for f in element.findall("file_info")
    )
    stderr_element = element.find("stderr_out")  # <core_client_version> and a CDATA <stderr_txt>
    stderr = "".join(stderr_element.itertext()).strip() if stderr_element is not None else ""
    return ReportedResult(
        name=(element.findtext("name") or "").strip(),
        state=_int(element, "state"),
        exit_status=_int(element, "exit_status"),
        elapsed_time=_float(element, "final_elapsed_time"),
        cpu_time=_float(element, "final_cpu_time"),
        stderr_out=stderr[-MAX_STDERR:],
        files=files,
    )


def handle_request(config, request, max_jobs=4, now=None):
    """Record reports and assign work for ``request``; returns the ``RpcOutcome``."""
    now = time.time() if now is None else now
    outcome = RpcOutcome(send_code_sign_key=not request.has_code_sign_key)
    if not hmac.compare_digest(request.authenticator.encode(), config.authenticator.encode()):
        outcome.authenticated = False
        outcome.messages.append(("notice", "Invalid or missing account key.  To fix, remove and add this project."))
        return outcome
    connection = config.connect()
    try:
        with db.transaction(connection):
            outcome.hostid, outcome.new_host = _host(connection, request, now)
            for reported in request.results:
                outcome.acks.append(reported.name)
                _record(connection, config, outcome.hostid, reported, now)
            if request.work_seconds > 0:
                outcome.sent = _assign(connection, outcome, request, max_jobs, now)
    finally:
        connection.close()
    return outcome


def _host(connection, request, now):
    platform = request.platforms[0] if request.platforms else ""
    row = connection.execute("SELECT id FROM host WHERE id = ?", (request.hostid,)).fetchone() if request.hostid else None
    if row:
        connection.execute("UPDATE host SET rpc_time = ? WHERE id = ?", (now, row["id"]))
        return row["id"], False
    return db.insert(connection, "host", platform=platform, create_time=now, rpc_time=now), True


def _record(connection, config, hostid, reported, now):
    row = connection.execute("SELECT * FROM result WHERE name = ?", (reported.name,)).fetchone()
    if row is None or row["server_state"] != db.IN_PROGRESS or row["hostid"] != hostid:
        return
    problem = "" if reported.succeeded else f"state {reported.state}, exit status {reported.exit_status}"
    if not problem:
        problem = _missing_output(connection, config, row["id"], reported)
    connection.execute(
        "UPDATE result SET server_state = ?, outcome = ?, received_time = ?, exit_status = ?, elapsed_time = ?,"
        " cpu_time = ?, stderr_out = ?, validate_message = ? WHERE id = ?",
        (db.OVER, db.CLIENT_ERROR if problem else db.SUCCESS, now, reported.exit_status, reported.elapsed_time,
         reported.cpu_time, reported.stderr_out, problem, row["id"]),
    )  # fmt: skip
    if problem:
        transitions.result_failed(connection, row["wuid"])


def _missing_output(connection, config, result_id, reported):
    """Why the reported output is not all on the server ("" if it is)."""
    claimed = {f.name: f for f in reported.files}
    for output in connection.execute("SELECT name FROM result_file WHERE result_id = ?", (result_id,)):
        path = config.upload_path(output["name"])
        try:
            size = os.path.getsize(path)
        except OSError:
            return f"output file {output['name']} was never uploaded"
        report = claimed.get(output["name"])
        if report and report.nbytes >= 0 and size != int(report.nbytes):
            return f"output file {output['name']}: {size} bytes on the server, the client reports {int(report.nbytes)}"
        if report and report.md5 and keys.file_md5(path) != report.md5:
            return f"output file {output['name']}: md5 differs from the client's"
    return ""


def _assign(connection, outcome, request, max_jobs, now):
    sent, seconds = [], 0.0
    rows = connection.execute(
        "SELECT r.id, r.wuid, w.appid, w.rsc_fpops_est, w.delay_bound FROM result r JOIN workunit w ON w.id = r.wuid"
        " WHERE r.server_state = ? ORDER BY w.priority DESC, r.id",
        (db.UNSENT,),
    ).fetchall()
    for row in rows:
        if len(sent) >= max_jobs or (sent and seconds >= request.work_seconds):
            break
        version = best_app_version(connection, row["appid"], request.platforms)
        if version is None:
            _note_no_version(connection, outcome, row["appid"], request.platforms)
            continue
        connection.execute(
            "UPDATE result SET server_state = ?, hostid = ?, app_version_id = ?, sent_time = ?, report_deadline = ?"
            " WHERE id = ? AND server_state = ?",
            (db.IN_PROGRESS, outcome.hostid, version["id"], now, now + row["delay_bound"], row["id"], db.UNSENT),
        )
        sent.append(row["id"])
        seconds += row["rsc_fpops_est"] / request.p_fpops
    if not sent and not outcome.messages:
        outcome.messages.append(("low", "No tasks are available"))
    return sent


def best_app_version(connection, appid, platforms):
    if not platforms:
        return None
    marks = ", ".join("?" for _ in platforms)
    return connection.execute(
        f"SELECT * FROM app_version WHERE appid = ? AND plan_class = '' AND platform IN ({marks})"
        " ORDER BY version_num DESC LIMIT 1",
        (appid, *platforms),
    ).fetchone()


def _note_no_version(connection, outcome, appid, platforms):
    name = connection.execute("SELECT name FROM app WHERE id = ?", (appid,)).fetchone()["name"]
    text = f"No app version of {name} for {', '.join(platforms) or 'this platform'}"
    if ("low", text) not in outcome.messages:
        outcome.messages.append(("low", text))

