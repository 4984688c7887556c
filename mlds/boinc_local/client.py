"""Debian's real ``boinc-client`` (7.20), run privately and attached to a local BOINC project.

What volunteers run is BOINC's own client, so end-to-end tests use it rather than an imitation. It
runs privately so that it neither disturbs nor is disturbed by a system client, the machine's load or
the internet:

- its own data directory (under the service user's runtime directory, owned by the service user,
  who also runs the client), its GUI RPC on a free loopback port with a password
  (``gui_rpc_auth.cfg``), ``--allow_multiple_clients``;
- ``cc_config.xml``: ``report_results_immediately`` (a result reaches the server as soon as it is
  uploaded), ``no_info_fetch`` and ``dont_contact_ref_site`` (no outside sites),
  ``skip_cpu_benchmarks``, ``no_priority_change`` (a niced, SCHED_IDLE app barely runs on a busy
  machine);
- ``global_prefs_override.xml``: ``suspend_cpu_usage`` 0 (other load must not suspend computing),
  all CPUs, a tiny work buffer.

An account comes from the project's own ``create_account.php`` (``passwd_hash`` is
``md5(password + lower(email))``, as BOINC's clients compute it); ``attach`` is ``boinccmd
--project_attach``, ``update`` asks for a scheduler RPC now (whatever the client's back-off), and
``stop`` is ``boinccmd --quit`` (the client tells its apps to quit and waits for them) and a wait.
"""

import hashlib
import re
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlds.boinc_local.deps import require_programs
from mlds.boinc_local.errors import BoincLocalError, CommandError, ServiceError
from mlds.boinc_local.waiting import free_port, tail, wait_until

CLIENT_PROGRAMS = {"boinc": "boinc-client", "boinccmd": "boinc-client"}

CC_CONFIG = """<cc_config>
  <log_flags><sched_op_debug/><task_debug/><file_xfer_debug/></log_flags>
  <options>
    <report_results_immediately>1</report_results_immediately>
    <allow_multiple_clients>1</allow_multiple_clients>
    <no_info_fetch>1</no_info_fetch>
    <dont_contact_ref_site>1</dont_contact_ref_site>
    <skip_cpu_benchmarks>1</skip_cpu_benchmarks>
    <no_priority_change>1</no_priority_change>
{extra}  </options>
</cc_config>
"""

GLOBAL_PREFS = """<global_preferences>
  <suspend_cpu_usage>0</suspend_cpu_usage>
  <run_if_user_active>1</run_if_user_active>
  <run_on_batteries>1</run_on_batteries>
  <cpu_usage_limit>100</cpu_usage_limit>
  <max_ncpus_pct>100</max_ncpus_pct>
  <work_buf_min_days>0</work_buf_min_days>
  <work_buf_additional_days>0.01</work_buf_additional_days>
  <disk_interval>{disk_interval}</disk_interval>
</global_preferences>
"""


@dataclass(frozen=True)
class ClientOptions:
    """``extra_cc_options``: more ``<options>`` lines for cc_config.xml."""

    gui_port: int = 0  # 0: a free port
    gui_password: str = ""  # empty: a random one
    disk_interval: float = 60.0  # the checkpoint period apps are told (init_data.xml)
    extra_cc_options: str = ""
    start_timeout: float = 60.0
    stop_timeout: float = 60.0


def password_hash(password, email):
    """What BOINC clients send as ``passwd_hash``: md5 of the password and the lower-case email."""
    return hashlib.md5((password + email.lower()).encode()).hexdigest()


def create_account(project_url, email, password, user_name, timeout=30):
    """A new account through the project's ``create_account.php``; returns its authenticator."""
    query = urllib.parse.urlencode(
        {"email_addr": email, "passwd_hash": password_hash(password, email), "user_name": user_name}
    )
    url = f"{project_url.rstrip('/')}/create_account.php?{query}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        reply = response.read().decode(errors="replace")
    found = re.search(r"<authenticator>\s*([^<\s]+)\s*</authenticator>", reply)
    if not found:
        raise BoincLocalError(f"create_account.php gave no authenticator:\n{reply[:2000]}")
    return found.group(1)


class BoincClient:
    """A private ``boinc`` process: ``start``, ``attach``, ``update``, ``boinccmd``, ``stop``."""

    def __init__(self, directory, service_user, options=ClientOptions()):
        self.directory = Path(directory)
        self.service_user = service_user
        self.options = options
        self.gui_port = options.gui_port or free_port()
        self.password = options.gui_password or secrets.token_hex(8)
        self.log = self.directory.parent / f"{self.directory.name}.log"
        self.process = None
        self.programs = require_programs(CLIENT_PROGRAMS)
        self.authenticators = {}  # project URL -> account authenticator, per attach

    def write_configuration(self):
        """cc_config.xml, global_prefs_override.xml, gui_rpc_auth.cfg (kept on a restart)."""
        if (self.directory / "gui_rpc_auth.cfg").exists():
            return
        self.service_user.make_dir(self.directory)
        extra = "".join(f"    {line}\n" for line in self.options.extra_cc_options.splitlines() if line.strip())
        self._write("cc_config.xml", CC_CONFIG.format(extra=extra))
        self.set_disk_interval(self.options.disk_interval, tell_client=False)
        self._write("gui_rpc_auth.cfg", self.password, mode=0o600)

    def _write(self, name, text, mode=0o644):
        path = self.directory / name
        path.write_text(text)
        path.chmod(mode)
        self.service_user.chown(path)

    def set_disk_interval(self, seconds, tell_client=True):
        """The checkpoint period tasks started from now on get; re-read by a running client."""
        self._write("global_prefs_override.xml", GLOBAL_PREFS.format(disk_interval=seconds))
        if tell_client:
            self.boinccmd("--read_global_prefs_override")

    def start(self):
        """Start the client (a restart keeps its data directory) and wait for its GUI RPC."""
        self.write_configuration()
        command = [
            self.programs["boinc"], "--dir", self.directory, "--allow_multiple_clients",
            "--gui_rpc_port", self.gui_port, "--skip_cpu_benchmarks", "--no_info_fetch",
        ]  # fmt: skip
        with open(self.log, "a") as log:
            self.process = self.service_user.popen(
                command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._rpc_answers, self.options.start_timeout, "the BOINC client's GUI RPC", log=self.log)
        return self

    def _rpc_answers(self):
        if self.process.poll() is not None:
            raise ServiceError(f"boinc exited {self.process.returncode} while starting:\n{tail(self.log)}", self.log)
        return self.boinccmd("--get_cc_status", check=False).returncode == 0

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def boinccmd(self, *arguments, check=True, timeout=30):
        """``boinccmd --host 127.0.0.1:PORT --passwd … ARGS`` (as the caller: it is only an RPC)."""
        command = [self.programs["boinccmd"], "--host", f"127.0.0.1:{self.gui_port}", "--passwd", self.password]
        command += [str(a) for a in arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            shown = command[:4] + ["…"] + command[5:]  # not the password
            raise CommandError(shown, done.returncode, done.stdout + done.stderr)
        return done

    def attach(self, project_url, authenticator):
        self.boinccmd("--project_attach", project_url, authenticator)
        self.authenticators[project_url] = authenticator

    def update(self, project_url):
        """Ask for a scheduler RPC now (reports results, asks for work)."""
        self.boinccmd("--project", project_url, "update")

    def wait_updating(self, project_url, condition, timeout, what, every=10.0):
        """``wait_until(condition)``, asking for a scheduler RPC every ``every`` seconds (the
        client's own back-off would otherwise pace a test); raises ``ServiceError`` on timeout."""
        asked = [float("-inf")]

        def check():
            if time.monotonic() - asked[0] > every:
                self.update(project_url)
                asked[0] = time.monotonic()
            return condition()

        wait_until(check, timeout, what, interval=0.5)

    def tasks(self):
        """``boinccmd --get_tasks`` as one dict per task (field name -> text)."""
        tasks = []
        for line in self.boinccmd("--get_tasks").stdout.splitlines():
            if re.match(r"\d+\) -+$", line):
                tasks.append({})
            elif tasks and ": " in line:
                key, value = line.strip().split(": ", 1)
                tasks[-1][key] = value
        return tasks

    def stop(self):
        """``boinccmd --quit`` and wait (the client quits its apps first); SIGKILL past the timeout."""
        if not self.running:
            return
        self.boinccmd("--quit", check=False)
        try:
            self.process.wait(timeout=self.options.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ServiceError(f"boinc did not quit within {self.options.stop_timeout} s; killed", self.log) from None


def attach_new_account(client, project_url, email="volunteer@example.test", password="volunteer-pw", user_name="volunteer"):
    """Create an account on the project and attach ``client`` with it; returns the authenticator."""
    authenticator = create_account(project_url, email, password, user_name)
    client.attach(project_url, authenticator)
    return authenticator
