"""The ``<scheduler_reply>`` a 7.20 client accepts, built with lxml (never string formatting).

What the client needs (reference §4.1, proven against 7.20.5): the project header
(``scheduler_version``, ``master_url`` equal to the URL it attached to, ``project_name``,
``hostid`` on first contact, ``request_delay``); ``code_sign_key`` only when the request carried
none (sent again without ``code_sign_key_signature``, the client complains); per sent result the
``<app>``, the app files' ``<file_info>`` with ``<executable/>``, ``<file_signature>``,
``nbytes`` and ``md5_cksum``, the ``<app_version>`` (``api_version`` 7.20.0 makes the client use
``boinc_mmap_file``), the input ``<file_info>``s and ``<workunit>``, the output ``<file_info>``s
whose ``<url>`` contains ``file_upload_handler`` (otherwise the client tries to *download* them),
and the ``<result>``; and a ``<result_ack>`` per reported result. No XML declaration: old clients
choke on one, and the client never needs it.
"""

from dataclasses import dataclass

from lxml import etree

from mlds.test_server.project import dir_hier_url
from mlds.test_server.xmlsafe import parse_xml

SCHEDULER_VERSION = 720
REQUEST_DELAY = 5.0  # seconds between RPCs: short, this is a test server
UNAUTHENTICATED_DELAY = 3600.0


@dataclass(frozen=True)
class ServerUrls:
    """Every URL the server hands out, derived from ``http://127.0.0.1:PORT``."""

    base: str
    fanout: int

    @property
    def master(self):
        return f"{self.base}/"

    @property
    def scheduler(self):
        return f"{self.base}/cgi-bin/cgi"

    @property
    def upload(self):
        return f"{self.base}/cgi-bin/file_upload_handler"

    def download(self, name):
        return dir_hier_url(name, f"{self.base}/download", self.fanout)


def master_page(config, urls):
    """The master page: the client reads the ``<link rel="boinc_scheduler">`` line (keep it on one line)."""
    return (
        "<html><head><title>{name}</title>\n"
        '<link rel="boinc_scheduler" href="{scheduler}">\n'
        "</head><body><h1>{name}</h1><p>A BOINC test project server for mlds (loopback only).</p>\n"
        "<!-- <scheduler>{scheduler}</scheduler> -->\n</body></html>\n"
    ).format(name=_html(config.long_name), scheduler=urls.scheduler)


def _html(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _add(parent, tag, text=None):
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def _flag(parent, tag, on):
    if on:
        etree.SubElement(parent, tag)


def _extra(parent, xml):
    """Append the elements a template asked to copy through."""
    if xml:
        for child in parse_xml(f"<extra>{xml}</extra>".encode("utf-8"), "stored template XML"):
            parent.append(child)


def build_reply(config, urls, outcome, p_fpops=1e9):
    """The reply document (bytes) for an ``RpcOutcome``."""
    root = etree.Element("scheduler_reply")
    _add(root, "scheduler_version", SCHEDULER_VERSION)
    _add(root, "dont_use_dcf")
    _add(root, "master_url", urls.master)
    _add(root, "request_delay", f"{REQUEST_DELAY if outcome.authenticated else UNAUTHENTICATED_DELAY:f}")
    for priority, text in outcome.messages:
        _add(root, "message", text).set("priority", priority)
    _add(root, "project_name", config.long_name)
    if not outcome.authenticated:
        return etree.tostring(root, pretty_print=True)
    if outcome.new_host:
        _add(root, "hostid", outcome.hostid)
    if outcome.send_code_sign_key:
        _add(root, "code_sign_key", config.public_key_text())
    for name in outcome.acks:
        _add(_add(root, "result_ack"), "name", name)
    if outcome.sent:
        connection = config.connect()
        try:
            _add_work(root, connection, urls, outcome.sent, p_fpops)
        finally:
            connection.close()
    return etree.tostring(root, pretty_print=True)


def _add_work(root, connection, urls, result_ids, p_fpops):
    results = [connection.execute("SELECT * FROM result WHERE id = ?", (i,)).fetchone() for i in result_ids]
    versions = {r["app_version_id"]: _version(connection, r["app_version_id"]) for r in results}
    apps = {v["appid"]: v for v in versions.values()}
    for version in apps.values():
        app = _add(root, "app")
        _add(app, "name", version["app_name"])
        _add(app, "user_friendly_name", version["user_friendly_name"])
    for version in versions.values():
        _add_app_version(root, connection, urls, version, p_fpops)
    for result in results:
        wu = connection.execute("SELECT * FROM workunit WHERE id = ?", (result["wuid"],)).fetchone()
        _add_workunit(root, connection, urls, wu, versions[result["app_version_id"]])
        _add_result(root, connection, urls, result, wu, versions[result["app_version_id"]])


def _version(connection, version_id):
    return connection.execute(
        "SELECT v.*, a.name AS app_name, a.user_friendly_name FROM app_version v JOIN app a ON a.id = v.appid"
        " WHERE v.id = ?",
        (version_id,),
    ).fetchone()


def _add_app_version(root, connection, urls, version, p_fpops):
    files = connection.execute(
        "SELECT * FROM app_version_file WHERE app_version_id = ? ORDER BY position", (version["id"],)
    ).fetchall()
    for row in files:
        info = _add(root, "file_info")
        _add(info, "name", row["name"])
        _add(info, "url", urls.download(row["name"]))
        _add(info, "executable")
        _add(info, "file_signature", row["signature"])
        _add(info, "nbytes", row["nbytes"])
        _add(info, "md5_cksum", row["md5"])
    element = _add(root, "app_version")
    for tag in ("app_name", "version_num", "platform"):
        _add(element, tag, version[tag])
    _add(element, "avg_ncpus", f"{version['avg_ncpus']:f}")
    _add(element, "flops", f"{p_fpops:f}")
    _add(element, "api_version", version["api_version"])
    if version["plan_class"]:
        _add(element, "plan_class", version["plan_class"])
    if version["cmdline"]:
        _add(element, "cmdline", version["cmdline"])
    for row in files:
        ref = _add(element, "file_ref")
        _add(ref, "file_name", row["name"])
        if row["logical_name"]:
            _add(ref, "open_name", row["logical_name"])
        _flag(ref, "main_program", row["main_program"])
        _flag(ref, "copy_file", row["copy_file"])


def _add_workunit(root, connection, urls, wu, version):
    files = connection.execute("SELECT * FROM wu_file WHERE wuid = ? ORDER BY position", (wu["id"],)).fetchall()
    for row in files:
        info = _add(root, "file_info")
        _add(info, "name", row["name"])
        _add(info, "url", row["url"] or urls.download(row["name"]))
        _add(info, "md5_cksum", row["md5"])
        _add(info, "nbytes", row["nbytes"])
        _extra(info, row["extra_xml"])
    element = _add(root, "workunit")
    _add(element, "name", wu["name"])
    _add(element, "app_name", version["app_name"])
    _add(element, "version_num", version["version_num"])
    if wu["command_line"]:
        _add(element, "command_line", wu["command_line"])
    for tag in ("rsc_fpops_est", "rsc_fpops_bound", "rsc_memory_bound", "rsc_disk_bound"):
        _add(element, tag, f"{wu[tag]:f}")
    for row in files:
        ref = _add(element, "file_ref")
        _add(ref, "file_name", row["name"])
        _add(ref, "open_name", row["open_name"])
        _flag(ref, "copy_file", row["copy_file"])
    _extra(element, wu["extra_xml"])


def _add_result(root, connection, urls, result, wu, version):
    files = connection.execute(
        "SELECT * FROM result_file WHERE result_id = ? ORDER BY position", (result["id"],)
    ).fetchall()
    for row in files:
        info = _add(root, "file_info")
        _add(info, "name", row["name"])
        _add(info, "url", row["url"] or urls.upload)
        _add(info, "max_nbytes", row["max_nbytes"])
        _extra(info, row["extra_xml"])
    element = _add(root, "result")
    _add(element, "name", result["name"])
    _add(element, "wu_name", wu["name"])
    _add(element, "report_deadline", f"{result['report_deadline']:f}")
    _add(element, "platform", version["platform"])
    _add(element, "version_num", version["version_num"])
    if version["plan_class"]:
        _add(element, "plan_class", version["plan_class"])
    for row in files:
        ref = _add(element, "file_ref")
        _add(ref, "file_name", row["name"])
        _add(ref, "open_name", row["open_name"])
        _flag(ref, "copy_file", row["copy_file"])
    _extra(element, result["result_xml"])

