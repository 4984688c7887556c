"""One DS1 workunit through a real BOINC 7.20 client and the test project server, the whole way.

download (signed launcher + spec) -> train in a slot -> upload -> report -> validate (bin/mlds_validate,
called as script_validator would) -> assimilate (bin/mlds_assimilate) -> the network is in the store.

The client runs privately: its own data directory, GUI RPC on its own loopback port with a password,
``suspend_cpu_usage`` 0 (other load on the machine must not suspend it) and ``no_priority_change``
(a niced, SCHED_IDLE app would barely run on a busy machine). Every wait polls the server's database
or ``boinccmd`` against a deadline. The measured times are printed (``pytest -s``) and recorded as
test properties.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from assimilator.store import DatasetStore
from mlds.cli import main
from mlds.test_server.project import load_project
from mlds.test_server.queries import format_summaries, workunit_summaries

BOINC, BOINCCMD = shutil.which("boinc"), shutil.which("boinccmd")
GUI_PASSWORD = "e2e-test"
PLATFORM = "x86_64-pc-linux-gnu"

pytestmark = [
    pytest.mark.boinc_client,
    pytest.mark.slow,
    pytest.mark.skipif(not (BOINC and BOINCCMD), reason="needs Debian's boinc-client (boinc, boinccmd): apt-get install boinc-client"),
]

CC_CONFIG = """<cc_config>
  <log_flags><sched_op_debug/><task_debug/><file_xfer_debug/></log_flags>
  <options>
    <report_results_immediately>1</report_results_immediately>
    <allow_multiple_clients>1</allow_multiple_clients>
    <no_priority_change>1</no_priority_change>
  </options>
</cc_config>
"""

GLOBAL_PREFS = """<global_preferences>
  <suspend_cpu_usage>0</suspend_cpu_usage>
  <run_if_user_active>1</run_if_user_active>
  <cpu_usage_limit>100</cpu_usage_limit>
  <max_ncpus_pct>100</max_ncpus_pct>
  <work_buf_min_days>0</work_buf_min_days>
  <work_buf_additional_days>0.01</work_buf_additional_days>
  <disk_interval>60</disk_interval>
</global_preferences>
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cli(*arguments, stdin=None):
    result = CliRunner().invoke(main, list(arguments), input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


class Harness:
    """The project, its server process and a private client, with diagnostics for failures."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.project_dir = str(tmp_path / "project")
        self.client_dir = tmp_path / "client"
        self.port, self.gui_port = free_ports(2)
        self.server = self.client = None
        self.marks = {}

    def mark(self, name):
        self.marks[name] = time.monotonic()

    def prepare_project(self):
        cli("test-server", "init", "--project", self.project_dir)
        launcher = str(self.tmp / "mlds_trainer_100.sh")
        cli("test-server", "launcher", "-o", launcher)
        cli("test-server", "add-app", "--project", self.project_dir, "--app", "mlds_trainer", "--version", "100", "--platform", PLATFORM, launcher)
        spec = str(self.tmp / "e2e_ds1_spec.json")
        cli("spec", "--dataset", "DS1", "--machine", "SingleDirectMachine", "--networks", "1", "--max-epochs", "2", "-o", spec)
        cli("test-server", "stage-file", "--project", self.project_dir, spec)
        cli("test-server", "create-work", "--project", self.project_dir, "--appname", "mlds_trainer", "--wu_name", "e2e", "--stdin",
            stdin="--wu_name e2e_ds1 e2e_ds1_spec.json\n")  # fmt: skip
        self.config = load_project(self.project_dir)

    def start_server(self):
        self.server_log = open(self.tmp / "server.log", "w")
        command = [sys.executable, "-m", "mlds.cli", "test-server", "serve", "--project", self.project_dir, "--port", str(self.port)]
        self.server = subprocess.Popen(command, stdout=self.server_log, stderr=subprocess.STDOUT)
        self.master_url = f"http://127.0.0.1:{self.port}/"
        self.wait_for(self._master_page_up, 60, "the server's master page")

    def _master_page_up(self):
        assert self.server.poll() is None, f"server exited {self.server.returncode}"
        try:
            with urllib.request.urlopen(self.master_url, timeout=2) as response:
                return b"boinc_scheduler" in response.read()
        except OSError:
            return False

    def start_client(self):
        self.client_dir.mkdir()
        (self.client_dir / "cc_config.xml").write_text(CC_CONFIG)
        (self.client_dir / "global_prefs_override.xml").write_text(GLOBAL_PREFS)
        (self.client_dir / "gui_rpc_auth.cfg").write_text(GUI_PASSWORD)
        self.client_log = open(self.tmp / "client.log", "w")
        command = [BOINC, "--dir", str(self.client_dir), "--allow_multiple_clients", "--gui_rpc_port", str(self.gui_port),
                   "--skip_cpu_benchmarks", "--no_info_fetch"]  # fmt: skip
        self.client = subprocess.Popen(command, cwd=self.client_dir, stdout=self.client_log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self.boinccmd("--get_cc_status").returncode == 0, 60, "the client's GUI RPC")

    def boinccmd(self, *arguments):
        command = [BOINCCMD, "--host", f"127.0.0.1:{self.gui_port}", "--passwd", GUI_PASSWORD, *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def attach(self):
        self.mark("attach")
        attached = self.boinccmd("--project_attach", self.master_url, self.config.authenticator)
        assert attached.returncode == 0, attached.stdout + attached.stderr

    def result(self):
        (wu,) = workunit_summaries(self.config)
        return wu, wu["results"][0]

    def wait_for(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout} s waiting for {what}\n{self.diagnostics()}")

    def diagnostics(self):
        slots = sorted(self.client_dir.glob("slots/*/stderr.txt")) if self.client_dir.exists() else []
        parts = [
            "== server state ==\n" + format_summaries(workunit_summaries(self.config)) if hasattr(self, "config") else "",
            "== boinccmd --get_tasks ==\n" + (self.boinccmd("--get_tasks").stdout if self.client else ""),
            "== server log ==\n" + tail(self.tmp / "server.log"),
            "== client log ==\n" + tail(self.tmp / "client.log", 60),
            *(f"== {path} ==\n{tail(path)}" for path in slots),
        ]
        return "\n".join(parts)

    def stop(self):
        if self.client and self.client.poll() is None:
            self.boinccmd("--quit")
            try:
                self.client.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.client.kill()
                self.client.wait()
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        for handle in ("client_log", "server_log"):
            if hasattr(self, handle):
                getattr(self, handle).close()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.stop()


def test_one_ds1_workunit_through_the_real_client(harness, record_property):
    harness.prepare_project()
    harness.start_server()
    harness.mark("client start")
    harness.start_client()
    harness.attach()
    steps = [
        ("sent", 180, lambda wu, r: r["server_state"] != "unsent"),
        ("reported", 600, lambda wu, r: r["server_state"] == "over"),
        ("validated", 300, lambda wu, r: r["validate_state"] != "init" or wu["assimilate_state"] != "init"),
        ("assimilated", 300, lambda wu, r: wu["assimilate_state"] == "done" or wu["assimilate_error"]),
    ]
    for name, timeout, done in steps:
        harness.wait_for(lambda: done(*harness.result()), timeout, f"the result to be {name}")
        harness.mark(name)
        wu, result = harness.result()
        if name == "reported":
            assert result["outcome"] == "success", f"client error: {result['validate_message']}\n{harness.diagnostics()}"
        if name == "validated":
            assert result["validate_state"] == "valid", f"{result['validate_message']}\n{harness.diagnostics()}"
    wu, result = harness.result()
    assert wu["assimilate_state"] == "done", f"assimilator stopped: {wu['assimilate_error']}\n{harness.diagnostics()}"
    _, tables = DatasetStore(os.path.join(harness.project_dir, "store"), "DS1").read()
    assert tables["SingleDirectMachine"].indices.tolist() == [0]
    assert tables["SingleDirectMachine"].columns["workunit"].tolist() == ["DS1-SingleDirectMachine-n000000-k1-c0"]
    report_timings(harness, result, record_property)


def report_timings(harness, result, record_property):
    attach = harness.marks["attach"]
    timings = {name: round(harness.marks[name] - attach, 1) for name in ("sent", "reported", "validated", "assimilated")}
    timings["trainer_elapsed"] = round(result["elapsed_time"], 1)
    for name, seconds in timings.items():
        record_property(f"seconds_{name}", seconds)
    print(f"\nround trip of one DS1 workunit through boinc {BOINC} (seconds after attach): {timings}")
