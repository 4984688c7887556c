"""A real BOINC project on 127.0.0.1, made by BOINC's own ``make_project`` from a built server tree.

mlds's server-side programs (work generator, validator, assimilator, monitors) plug into a BOINC
project through BOINC's contracts: ``create_work``, ``config.xml`` daemons, ``script_validator`` and
``script_assimilator``, the MariaDB schema. Testing them means running that project for real, so
this module makes one and runs it, taking care of what ``make_project`` leaves to an administrator:

- ``--project_host`` is this machine's short host name as ``bin/start`` computes it (``gethostname``
  up to the first dot); with any other value ``bin/start`` starts no daemon.
- BOINC's Python tools run under Debian's ``python3`` (first on ``PATH`` as ``python``, with
  ``MySQLdb``), with ``$USER`` set (see ``service_user``).
- ``USE_STOPFORUMSPAM`` is turned off in ``html/project/project.inc``: ``create_account.php`` would
  otherwise ask an outside web site about every new account.
- The project belongs to the service user, which runs Apache (``apache``) and the daemons.
  ``make_project`` itself runs as the caller, because the build tree (in the caller's cache) need not
  be readable by the service user; the finished project is then handed over with ``chown``.
- ``bin/stop`` does not wait for the daemons under Python 3 (it maps over an iterator twice), so
  ``stop_daemons`` sends SIGHUP to every ``pid_HOST/*.pid`` itself and waits for each to exit.

``LocalProject`` is the handle tests and developers use: paths (``root``, ``config_xml``,
``log_dir``), the master ``url``, the database parameters, ``run_bin`` for the project's tools,
``as_service_user`` for anything else that must run inside the project as its owner.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from mlds.boinc_local.apache import ApacheConfig, ApacheServer, check_apache
from mlds.boinc_local.deps import require_programs
from mlds.boinc_local.errors import BoincLocalError, MissingDependencyError, ServiceError
from mlds.boinc_local.mariadb import check_database_name, drop_database
from mlds.boinc_local.service_user import require_system_mysqldb
from mlds.boinc_local.waiting import free_port, tail, wait_until

PROJECT_PROGRAMS = {"php": "php-cli"}
PHP_EXTENSIONS = {"mysqli": "php-mysql", "xml": "php-xml"}


@dataclass(frozen=True)
class ProjectOptions:
    """What to call the project and how long to wait for its parts."""

    name: str = "mldstest"
    long_name: str = "mlds local BOINC project"
    http_port: int = 0  # 0: a free port
    start_timeout: float = 60.0
    stop_timeout: float = 60.0


def project_host():
    """The host name ``bin/start`` compares each daemon's ``<host>`` with."""
    return socket.gethostname().split(".")[0]


def check_project_dependencies(service_user):
    """Everything a project needs besides the build and the database, checked before making one."""
    require_programs(PROJECT_PROGRAMS)
    check_apache()
    for extension, package in PHP_EXTENSIONS.items():
        probe = f"exit(extension_loaded('{extension}') ? 0 : 1);"
        if subprocess.run(["php", "-r", probe], capture_output=True).returncode != 0:
            raise MissingDependencyError(f"PHP extension {extension}", [package])
    require_system_mysqldb(service_user)


def create_project(build_tree, db, service_user, options=ProjectOptions()):
    """Make a project with ``make_project`` (database ``db.database``, created afresh) and start its
    Apache; returns the ``LocalProject`` (daemons not started: ``start_daemons``)."""
    check_project_dependencies(service_user)
    check_database_name(options.name)
    check_database_name(db.database or "")
    port = options.http_port or free_port()
    projects = service_user.make_dir(service_user.runtime / "projects")
    root = projects / options.name
    url_base = f"http://127.0.0.1:{port}/"
    _make_project(Path(build_tree), db, service_user, root, url_base, options)
    _disable_stopforumspam(root / "html" / "project" / "project.inc")
    service_user.chown_tree(root)
    project = LocalProject(root, options, port, project_host(), db, service_user)
    project.start_web()
    return project


def _make_project(build_tree, db, service_user, root, url_base, options):
    command = [
        build_tree / "tools" / "make_project", "--no_query", "--delete_prev_inst", "--drop_db_first",
        "--url_base", url_base, "--project_host", project_host(), "--project_root", root,
        "--db_host", db.db_host, "--db_user", db.user, "--db_passwd", db.password, "--db_name", db.database,
        "--srcdir", build_tree, options.name, options.long_name,
    ]  # fmt: skip
    command = [str(part) for part in command]
    log = root.parent / f"{options.name}.make_project.log"
    with open(log, "w") as out:
        done = subprocess.run(
            command, cwd=root.parent, env=service_user.environment(), stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, timeout=300,
        )  # fmt: skip
    if done.returncode != 0 or not (root / "config.xml").exists():
        raise ServiceError(f"make_project exited {done.returncode}", log)


def _disable_stopforumspam(project_inc):
    text = project_inc.read_text()
    new, count = re.subn(r'define\(\s*"USE_STOPFORUMSPAM"\s*,\s*true\s*\)', 'define("USE_STOPFORUMSPAM", false)', text)
    if count != 1 and 'define("USE_STOPFORUMSPAM", false)' not in text:
        raise BoincLocalError(f"no USE_STOPFORUMSPAM define in {project_inc}: this BOINC version changed it")
    project_inc.write_text(new)


class LocalProject:
    """A made project: paths, URLs, database, and how to run things in it as its owner."""

    def __init__(self, root, options, http_port, host, db, service_user):
        self.root = Path(root)
        self.name = options.name
        self.options = options
        self.http_port = http_port
        self.url_base = f"http://127.0.0.1:{http_port}/"
        self.host = host
        self.db = db
        self.service_user = service_user
        self.web = None

    # -- where things are ------------------------------------------------------------------------
    url = property(lambda self: f"{self.url_base}{self.name}/", doc="the master URL")
    cgi_url = property(lambda self: f"{self.url_base}{self.name}_cgi/")
    scheduler_url = property(lambda self: f"{self.cgi_url}cgi")
    upload_url = property(lambda self: f"{self.cgi_url}file_upload_handler")
    config_xml = property(lambda self: self.root / "config.xml")
    project_xml = property(lambda self: self.root / "project.xml")
    httpd_conf = property(lambda self: self.root / f"{self.name}.httpd.conf")
    log_dir = property(lambda self: self.root / f"log_{self.host}")
    pid_dir = property(lambda self: self.root / f"pid_{self.host}")
    tmp_dir = property(lambda self: self.root / f"tmp_{self.host}")
    bin_dir = property(lambda self: self.root / "bin")
    download_dir = property(lambda self: self.root / "download")
    upload_dir = property(lambda self: self.root / "upload")
    db_host = property(lambda self: self.db.host)
    db_port = property(lambda self: self.db.port)
    db_user = property(lambda self: self.db.user)
    db_password = property(lambda self: self.db.password)
    db_name = property(lambda self: self.db.database)

    def connect(self):
        """A PyMySQL connection to the project's database (autocommit)."""
        return self.db.connect()

    def query(self, sql, *arguments):
        """All rows of one SQL statement on the project's database."""
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql, arguments)
            return cursor.fetchall()

    # -- running things as the project's owner ----------------------------------------------------
    def environment(self, extra=None):
        """The service user's environment with the project's ``bin/`` first on PATH."""
        return self.service_user.environment(extra, path_prefix=[self.bin_dir])

    def as_service_user(self, command, cwd=None, check=True, input=None, timeout=600, env=None):
        """Run ``command`` as the project's owner (cwd: the project root); ``CompletedProcess``
        with text output. ``CommandError`` if it exits non-zero and ``check``."""
        return self.service_user.run(
            command, check=check, cwd=cwd or self.root, input=input, timeout=timeout, env=env,
            path_prefix=[self.bin_dir], stdin=None if input is not None else subprocess.DEVNULL,
        )  # fmt: skip

    def popen_as_service_user(self, command, cwd=None, env=None, **kwargs):
        """Start ``command`` as the project's owner; the caller waits for (or stops) it."""
        return self.service_user.popen(command, cwd=cwd or self.root, env=env, path_prefix=[self.bin_dir], **kwargs)

    def run_bin(self, name, *args, check=True, input=None, timeout=600):
        """Run the project's ``bin/NAME ARGS`` with cwd = project root, as BOINC's tools expect."""
        return self.as_service_user([self.bin_dir / name, *args], check=check, input=input, timeout=timeout)

    def write_file(self, relative, text, mode=0o644):
        """Write a file inside the project (templates, scripts) owned by the service user."""
        path = self.root / relative
        self.service_user.make_dir(path.parent)
        path.write_text(text)
        path.chmod(mode)
        self.service_user.chown(path)
        return path

    # -- jobs -------------------------------------------------------------------------------------
    def stage_file(self, path):
        """``bin/stage_file_native --copy PATH`` into the download hierarchy; returns its name.

        The file goes through a staging directory of the service user's first: the caller's own
        files (under root's 0700 pytest directory, say) need not be readable by that user."""
        path = Path(path)
        staging = self.service_user.make_dir(self.service_user.runtime / "staging" / secrets.token_hex(4))
        try:
            copy = staging / path.name
            shutil.copyfile(path, copy)
            self.service_user.chown(copy)
            self.run_bin("stage_file_native", "--copy", copy)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path.name

    def create_work(self, appname, jobs, *options):
        """``bin/create_work --appname APP --stdin`` with one job line per item of ``jobs``."""
        lines = "".join(f"{job}\n" for job in jobs)
        return self.run_bin("create_work", "--appname", appname, *options, "--stdin", input=lines)

    # -- services ---------------------------------------------------------------------------------
    def start_web(self):
        config = ApacheConfig(
            directory=self.service_user.runtime / "apache" / self.name,
            port=self.http_port,
            includes=(self.httpd_conf,),
            ready_path=f"/{self.name}/",
            start_timeout=self.options.start_timeout,
        )
        self.web = ApacheServer(config, self.service_user).start()
        return self.web

    def stop_web(self):
        if self.web is not None:
            self.web.stop(self.options.stop_timeout)

    def add_daemon(self, cmd, **fields):
        """Append ``<daemon><cmd>CMD</cmd>…</daemon>`` to config.xml (before ``start_daemons``)."""
        tree = etree.parse(str(self.config_xml))
        daemons = tree.getroot().find("daemons")
        daemon = etree.SubElement(daemons, "daemon")
        for tag, value in {"cmd": cmd, **fields}.items():
            etree.SubElement(daemon, tag).text = str(value)
        self.write_xml(tree, self.config_xml)

    def set_config(self, **values):
        """Set ``<config><TAG>value</TAG>`` entries of config.xml (``True``: an empty flag element)."""
        tree = etree.parse(str(self.config_xml))
        config = tree.getroot().find("config")
        for tag, value in values.items():
            element = config.find(tag)
            if element is None:
                element = etree.SubElement(config, tag)
            element.text = "" if value is True else str(int(value) if isinstance(value, bool) else value)
        self.write_xml(tree, self.config_xml)

    def write_xml(self, tree, path):
        """Replace ``path`` atomically with ``tree`` (an lxml tree), owned by the service user."""
        temporary = path.with_name(path.name + ".new")
        tree.write(str(temporary), pretty_print=True)
        self.service_user.chown(temporary)
        os.replace(temporary, path)

    def configured_daemons(self):
        """``{pid file name: cmd}`` of the enabled daemons of this host in config.xml."""
        daemons = {}
        for daemon in etree.parse(str(self.config_xml)).getroot().iterfind("daemons/daemon"):
            text = {child.tag: (child.text or "").strip() for child in daemon}
            if text.get("disabled", "0") not in ("", "0") or text.get("host", self.host) != self.host:
                continue
            pid_name = text.get("pid_file") or os.path.basename(text["cmd"].split()[0]) + ".pid"
            daemons[pid_name] = text["cmd"]
        return daemons

    def daemon_pids(self):
        """``{pid file name: pid}`` for every pid file with a live process."""
        pids = {}
        for path in self.pid_dir.glob("*.pid"):
            pid = _read_pid(path)
            if pid and process_alive(pid):
                pids[path.name] = pid
        return pids

    def start_daemons(self):
        """``bin/start``, then wait until every configured daemon runs (its pid file names a live
        process). A daemon that exits at once (bad arguments) is named with its log."""
        self.run_bin("start")
        wanted = self.configured_daemons()
        wait_until(
            lambda: set(wanted) <= set(self.daemon_pids()), self.options.start_timeout,
            f"daemons {sorted(wanted)} to run (running: {sorted(self.daemon_pids())})", log=self.log_dir,
        )  # fmt: skip
        self._check_daemons_stay_up(wanted)

    def _check_daemons_stay_up(self, wanted):
        """A daemon with bad arguments writes its pid file and exits within a moment."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            gone = set(wanted) - set(self.daemon_pids())
            if gone:
                raise ServiceError(f"daemon(s) {sorted(gone)} exited just after starting", self.log_dir)
            time.sleep(0.1)

    def stop_daemons(self):
        """SIGHUP to every ``pid_HOST/*.pid`` process; wait for each to exit; remove the pid files."""
        uid = self.service_user.uid
        pids = {path: _read_pid(path) for path in self.pid_dir.glob("*.pid")}
        pids = {path: pid for path, pid in pids.items() if pid and _owner(pid) == uid}  # not a stale file's reused pid
        for pid in pids.values():
            _signal(pid, signal.SIGHUP)
        alive = lambda: [pid for pid in pids.values() if process_alive(pid)]  # noqa: E731
        try:
            wait_until(lambda: not alive(), self.options.stop_timeout, "BOINC daemons to exit on SIGHUP", log=self.log_dir)
        finally:
            for pid in alive():
                _signal(pid, signal.SIGKILL)
            for path in self.pid_dir.glob("*.pid"):
                path.unlink(missing_ok=True)

    def diagnostics(self, lines=30):
        """The tails of the daemons' logs and Apache's error log, for a failing test's message."""
        logs = sorted(self.log_dir.glob("*")) + ([self.web.error_log] if self.web else [])
        return "\n".join(f"== {path} ==\n{tail(path, lines)}" for path in logs if path.is_file())

    def close(self, drop_db=False):
        """Stop daemons and Apache; with ``drop_db`` also drop the project's database."""
        try:
            self.stop_daemons()
        finally:
            self.stop_web()
            if drop_db:
                drop_database(self.db, self.db.database)


def _read_pid(path):
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _owner(pid):
    """The real uid of ``pid``, or None if it is gone."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def process_alive(pid):
    """True while ``pid`` exists and is not a zombie (daemons are double-forked: not our children,
    and a container's PID 1 may never reap them)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
