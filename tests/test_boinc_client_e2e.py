"""One DS1 workunit through a real BOINC 7.20 client and the test project server, the whole way.

download (signed launcher + spec) -> train in a slot -> upload -> report -> validate (bin/mlds_validate,
called as script_validator would) -> assimilate (bin/mlds_assimilate) -> the network is in the store.

The client runs privately: its own data directory, GUI RPC on its own loopback port with a password,
``suspend_cpu_usage`` 0 (other load on the machine must not suspend it) and ``no_priority_change``
(a niced, SCHED_IDLE app would barely run on a busy machine). Every wait polls the server's database
or ``boinccmd`` against a deadline. The measured times are printed (``pytest -s``) and recorded as
test properties.

The other tests share one client and server (module fixture ``live``); each creates its own
workunit, sets the preferences it needs first (the app reads the checkpoint period from
init_data.xml, written when the task starts) and asks the client for work with ``boinccmd
--project URL update``. They check what the client and the app do to a running task: suspend and
resume (and that fraction done only rises), quit with a client restart, SIGKILL, abort. The
workunits are short: one DS1 network, EightBitMachine for the running-task tests (it never
converges within their 4 epochs, so each task runs 4 epochs), SingleDirectMachine for the round trip
(it converges in an epoch or two). The running-task workunits' training set is sized on this machine
(``live``) so that an epoch lasts at least ``EPOCH_SECONDS``, whatever the CPU's speed: the tests
suspend, quit or kill a task between epochs and must find it still running.

The running-task tests run once per deployment of the trainer (``live``'s parameter):

- ``source``: the test server's shell launcher running ``boinc_app.main`` from this checkout;
- ``frozen``: the session's frozen bundle (tests/test_packaging_freeze.py) laid out by
  ``mlds package app-version`` (the ``sh`` bootstrap and the tar.gz it unpacks once per version),
  signed offline with ``mlds test-server sign`` and the project's key then moved out of ``keys/``;
- ``wrapped``: the same bundle under BOINC's own ``wrapper`` (built from the server tree's
  ``samples/wrapper``, ``mlds package app-version --wrapper``: job.xml, ``<unzip_input>`` of a zip),
  signed the same way. The wrapper is the process the client starts and controls; the trainer is
  its child in wrapper mode. Where the two differ, the tests say what each does: a suspended
  wrapped trainer is stopped by a signal (no message of its own), a killed wrapper's orphan exits
  by itself, and a killed trainer fails its task under the wrapper
  (``test_wrapped_trainer_killed_fails_the_task``) where the native app is restarted.
"""

import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from assimilator.store import DatasetStore
from boinc_app.result_file import read_result
from boinc_app.workunit_spec import write_spec
from mlds.cli import main
from mlds.test_server.project import load_project
from mlds.test_server.queries import format_summaries, workunit_summaries
from mlds.boinc_local.build import wrapper_program
from tests.app_versions import laid_out_apps, version_files
from tests.test_boinc_app_boinc_protocol import EPOCH_SECONDS, epoch_seconds
from tests.test_boinc_app_training import assert_same_networks
from tests.test_boinc_app_wrapper_mode import process_state
from tests.test_packaging_freeze import session_bundle
from workgen.specs import make_spec, with_data

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
  <disk_interval>{disk_interval}</disk_interval>
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


@dataclass(frozen=True)
class Deployment:
    """How the app version reaches the client: ``source`` (the launcher), ``frozen`` or ``wrapped``
    (``version_dir``: a laid-out app version of the frozen bundle)."""

    name: str = "source"
    version_dir: Path | None = None

    @property
    def wrapped(self):
        return self.name == "wrapped"


def resized_spec(machine, max_epochs, first_index, train_size):
    """One DS1 network's spec (as ``mlds spec`` makes it) with its training set resized."""
    made = make_spec("DS1", machine, networks=1, first_index=first_index, max_epochs=max_epochs)
    return with_data(made, train_size=train_size)


class Harness:
    """The project, its server process and a private client, with diagnostics for failures."""

    def __init__(self, tmp_path, train_sizes=None, deployment=Deployment()):
        self.tmp = tmp_path
        self.deployment = deployment
        self.train_sizes = train_sizes or {}  # machine -> training set size of its workunits
        self.project_dir = str(tmp_path / "project")
        self.client_dir = tmp_path / "client"
        self.port, self.gui_port = free_ports(2)
        self.server = self.client = None
        self.marks = {}
        self.specs = {}

    def mark(self, name):
        self.marks[name] = time.monotonic()

    def prepare_project(self):
        self.init_project()
        self.add_workunit("e2e_ds1", max_epochs=2)

    def init_project(self):
        cli("test-server", "init", "--project", self.project_dir)
        self.config = load_project(self.project_dir)
        if self.deployment.version_dir is None:
            launcher = str(self.tmp / "mlds_trainer_100.sh")
            cli("test-server", "launcher", "-o", launcher)
            cli("test-server", "add-app", "--project", self.project_dir, "--app", "mlds_trainer", "--version", "100", "--platform", PLATFORM, launcher)
        else:
            self.add_laid_out_version(self.deployment.version_dir)

    def add_laid_out_version(self, version_dir):
        """Sign the version's files offline (links to them, so the laid-out files stay unsigned), take
        the private key out of the project, and register the version with its logical names."""
        staged = self.tmp / "app_version"
        staged.mkdir()
        files = [(staged / path.name, logical, main) for path, logical, main in version_files(version_dir)]
        for link, _, _ in files:
            link.symlink_to(Path(version_dir) / link.name)
        cli("test-server", "sign", "--key", self.config.private_key_path, *(str(link) for link, _, _ in files))
        shutil.move(self.config.private_key_path, self.tmp / "offline_code_sign_private")
        (main_name,) = [link.name for link, _, main in files if main]
        logical = [f"--logical-name={link.name}={name}" for link, name, _ in files]
        cli("test-server", "add-app", "--project", self.project_dir, "--app", "mlds_trainer", "--version", "100", "--platform", PLATFORM,
            "--main", main_name, *logical, *(str(link) for link, _, _ in files))  # fmt: skip

    def spec(self, max_epochs, first_index=0, machine="SingleDirectMachine"):
        """The staged spec file of one DS1 network (made once per arguments)."""
        key = (max_epochs, first_index, machine)
        if key not in self.specs:
            spec = self.tmp / f"e2e_ds1_{machine}_{max_epochs}_{first_index}_spec.json"
            cli("spec", "--dataset", "DS1", "--machine", machine, "--networks", "1", "--first-index", str(first_index),
                "--max-epochs", str(max_epochs), "-o", str(spec))  # fmt: skip
            if machine in self.train_sizes:  # what ``mlds spec`` writes, with the training set resized
                write_spec(resized_spec(machine, max_epochs, first_index, self.train_sizes[machine]), spec)
            cli("test-server", "stage-file", "--project", self.project_dir, "--copy", str(spec))
            self.specs[key] = spec
        return self.specs[key]

    def add_workunit(self, wu_name, max_epochs, first_index=0, machine="SingleDirectMachine"):
        spec = self.spec(max_epochs, first_index, machine)
        cli("test-server", "create-work", "--project", self.project_dir, "--appname", "mlds_trainer", "--wu_name", wu_name, "--stdin",
            stdin=f"--wu_name {wu_name} {spec.name}\n")  # fmt: skip

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

    def start_client(self, disk_interval=60):
        """Start the client; a restart (the data directory exists) keeps its configuration and state."""
        if not self.client_dir.exists():
            self.client_dir.mkdir()
            (self.client_dir / "cc_config.xml").write_text(CC_CONFIG)
            (self.client_dir / "global_prefs_override.xml").write_text(GLOBAL_PREFS.format(disk_interval=disk_interval))
            (self.client_dir / "gui_rpc_auth.cfg").write_text(GUI_PASSWORD)
        self.client_log = open(self.tmp / "client.log", "a")
        command = [BOINC, "--dir", str(self.client_dir), "--allow_multiple_clients", "--gui_rpc_port", str(self.gui_port),
                   "--skip_cpu_benchmarks", "--no_info_fetch"]  # fmt: skip
        self.client = subprocess.Popen(command, cwd=self.client_dir, stdout=self.client_log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self.boinccmd("--get_cc_status").returncode == 0, 60, "the client's GUI RPC")

    def stop_client(self):
        """``boinccmd --quit`` (the client sends ``<quit/>`` to its apps and waits for them), then wait."""
        if self.client and self.client.poll() is None:
            self.boinccmd("--quit")
            try:
                self.client.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.client.kill()
                self.client.wait()
        if hasattr(self, "client_log"):
            self.client_log.close()

    def set_disk_interval(self, seconds):
        """The checkpoint period tasks started from now on get (init_data.xml's ``checkpoint_period``)."""
        (self.client_dir / "global_prefs_override.xml").write_text(GLOBAL_PREFS.format(disk_interval=seconds))
        done = self.boinccmd("--read_global_prefs_override")
        assert done.returncode == 0, done.stdout + done.stderr

    def boinccmd(self, *arguments):
        command = [BOINCCMD, "--host", f"127.0.0.1:{self.gui_port}", "--passwd", GUI_PASSWORD, *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def attach(self):
        self.mark("attach")
        attached = self.boinccmd("--project_attach", self.master_url, self.config.authenticator)
        assert attached.returncode == 0, attached.stdout + attached.stderr

    def result(self, wu_name=None):
        """``(workunit, its first result)`` from the server's database: the only one, or ``wu_name``'s."""
        units = [wu for wu in workunit_summaries(self.config) if wu_name in (None, wu["name"])]
        (wu,) = units
        return wu, wu["results"][0]

    def request_work(self, wu_name, timeout=180):
        """Make the client ask for work now until the workunit's result was sent."""
        self.wait_with_updates(lambda: self.result(wu_name)[1]["server_state"] != "unsent", timeout, f"workunit {wu_name} to be sent")

    def wait_with_updates(self, condition, timeout, what):
        """``wait_for``, with ``boinccmd --project URL update`` now and every 15 s: a scheduler RPC at once,
        whatever the client's back-off (after an error it defers reporting by minutes)."""
        asked = [-1e9]

        def check():
            if time.monotonic() - asked[0] > 15:
                self.boinccmd("--project", self.master_url, "update")
                asked[0] = time.monotonic()
            return condition()

        self.wait_for(check, timeout, what)

    def result_row(self, result_id, column):
        connection = self.config.connect()
        try:
            return connection.execute(f"SELECT {column} FROM result WHERE id = ?", (result_id,)).fetchone()[0]
        finally:
            connection.close()

    def uploaded_result(self, result_id):
        """``(spec, RunState, attrs)`` of the result file the client uploaded."""
        connection = self.config.connect()
        try:
            (name,) = connection.execute("SELECT name FROM result_file WHERE result_id = ?", (result_id,)).fetchone()
        finally:
            connection.close()
        return read_result(self.config.upload_path(name))

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

    def task(self, wu_name):
        return next((t for t in self.tasks() if t.get("WU name") == wu_name), None)

    def task_op(self, task, operation):
        """``boinccmd --task URL NAME suspend|resume|abort`` for a ``tasks()`` entry."""
        done = self.boinccmd("--task", self.master_url, task["name"], operation)
        assert done.returncode == 0, done.stdout + done.stderr

    def wait_for(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout} s waiting for {what}\n{self.diagnostics()}")

    def diagnostics(self):
        slots = sorted(self.client_dir.glob("slots/*/stderr.txt")) if self.client_dir.exists() else []
        client_up = self.client and self.client.poll() is None
        parts = [
            "== server state ==\n" + format_summaries(workunit_summaries(self.config)) if hasattr(self, "config") else "",
            "== boinccmd --get_tasks ==\n" + (self.boinccmd("--get_tasks").stdout if client_up else "(client not running)"),
            "== server log ==\n" + tail(self.tmp / "server.log"),
            "== client log ==\n" + tail(self.tmp / "client.log", 60),
            *(f"== {path} ==\n{tail(path)}" for path in slots),
        ]
        return "\n".join(parts)

    def stop(self):
        self.stop_client()
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        if hasattr(self, "server_log"):
            self.server_log.close()


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


# -- a running task under the shared client: suspend, quit and restart, SIGKILL, abort ---------------------

EXIT_ABORTED_VIA_GUI = 203  # the exit status the client reports for a task the user aborted
SUSPEND_WINDOW = 4.0  # seconds a suspended task is watched
STATUS_LAG = 1.0  # the app's last status message may reach the client up to a second after it suspends
LONG_MACHINE = "EightBitMachine"  # the workunits below: never converges within LONG_EPOCHS
LONG_EPOCHS = 4


def long_train_size(directory):
    """The training set size that makes an epoch of a ``LONG_MACHINE`` workunit last at least
    ``EPOCH_SECONDS`` here (the dataset's own size on a machine already that slow)."""
    spec = make_spec("DS1", LONG_MACHINE, networks=1, max_epochs=LONG_EPOCHS)
    measured = epoch_seconds(spec, directory)
    return max(spec.data.train_size, math.ceil(spec.data.train_size * EPOCH_SECONDS / measured))


@pytest.fixture(scope="module")
def long_train(tmp_path_factory):
    return long_train_size(tmp_path_factory.mktemp("calibration"))


NEEDS_PYINSTALLER = pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None, reason="needs PyInstaller: pip install 'mlds[package]'")
DEPLOYMENTS = [
    "source",
    pytest.param("frozen", marks=[pytest.mark.frozen, NEEDS_PYINSTALLER]),
    pytest.param("wrapped", marks=[pytest.mark.frozen, pytest.mark.boinc_server, NEEDS_PYINSTALLER]),
]


def deployment(request, tmp_path_factory):
    """The ``Deployment`` named by ``live``'s parameter (laying out the frozen bundle for it)."""
    if request.param == "source":
        return Deployment()
    wrapper = wrapper_program(request.getfixturevalue("boinc_server_build")) if request.param == "wrapped" else None
    apps = laid_out_apps(session_bundle(tmp_path_factory), tmp_path_factory, "mlds_trainer", "1.00", PLATFORM, wrapper)
    return Deployment(request.param, apps / "mlds_trainer" / "1.00" / PLATFORM)


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def live(request, long_train, tmp_path_factory):
    """One server and one attached client per deployment, shared by the tests below (each adds its own workunit)."""
    h = Harness(tmp_path_factory.mktemp(f"live_{request.param}"), {LONG_MACHINE: long_train}, deployment(request, tmp_path_factory))
    try:
        h.init_project()
        h.start_server()
        h.start_client()
        h.attach()
        yield h
    finally:
        h.stop()


@pytest.fixture
def run_workunit(live):
    """``start(name, disk_interval, first_index=0)``: a new workunit the client fetches at once; returns
    its ``TaskWatch``. Afterwards the client runs again and a task the test left unfinished is aborted,
    so that the next test finds the client idle."""
    started = []

    def start(name, disk_interval, first_index=0):
        wu_name = f"e2e_{name}"
        live.set_disk_interval(disk_interval)
        live.add_workunit(wu_name, LONG_EPOCHS, first_index, LONG_MACHINE)
        started.append(wu_name)
        live.request_work(wu_name)
        return TaskWatch(live, wu_name)

    yield start
    if live.client is None or live.client.poll() is not None:
        live.start_client()
    for wu_name in started:
        task = live.task(wu_name)
        if task is not None and live.result(wu_name)[1]["server_state"] != "over":
            live.task_op(task, "abort")


@pytest.fixture(scope="module")
def reference(long_train, tmp_path_factory):
    """The uninterrupted standalone run from source of the workunits' spec: its final ``RunState``
    (every deployment's interrupted run must end bitwise equal to it)."""
    directory = tmp_path_factory.mktemp("reference")
    write_spec(resized_spec(LONG_MACHINE, LONG_EPOCHS, 0, long_train), directory / "spec.json")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "boinc_app.main", "spec.json", "-o", "ref.h5"]
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    _, state, attrs = read_result(directory / "ref.h5")
    assert attrs["complete"]
    return state


class TaskWatch:
    """Polls one workunit's task in ``boinccmd --get_tasks``, keeping every observation."""

    def __init__(self, live, wu_name):
        self.live, self.wu_name = live, wu_name
        self.seen = []  # (monotonic time, task dict)

    def poll(self):
        task = self.live.task(self.wu_name)
        if task is not None:
            self.seen.append((time.monotonic(), task))
        return task

    def until(self, predicate, timeout, what):
        """Poll until ``predicate(task)`` holds; returns that observation."""
        found = []

        def check():
            task = self.poll()
            if task is not None and predicate(task):
                found.append(task)
            return bool(found)

        self.live.wait_for(check, timeout, f"{self.wu_name}: {what}")
        return found[0]

    def until_reported(self, timeout=300):
        """Poll the task until the server has its report; returns ``(workunit, result)``."""

        def reported():
            self.poll()
            return self.live.result(self.wu_name)[1]["server_state"] == "over"

        self.live.wait_for(reported, timeout, f"{self.wu_name} to be reported")
        return self.live.result(self.wu_name)

    def observe(self, seconds):
        """The observations of the next ``seconds``."""
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            self.poll()
            time.sleep(0.25)
        return [(t, task) for t, task in self.seen if t >= start]

    def slot(self, task):
        return self.live.client_dir / "slots" / task["slot"]


def number(task, field):
    return float(task[field])


def executing(task):
    return task.get("active_task_state") == "EXECUTING" and "PID" in task


def app_processes(slot):
    """PIDs of the processes whose working directory is ``slot`` (the client starts its app there)."""
    target, pids = os.path.realpath(slot), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == target:
                    pids.append(int(entry))
            except OSError:  # gone, or not ours
                pass
    return pids


def parent_pid(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def slot_processes_are(live, slot, app_pid):
    """The slot's processes are the app the client started and, under the wrapper, one trainer child
    of it; returns the trainer's pid (the app's own when native)."""
    pids = app_processes(slot)
    if not live.deployment.wrapped:
        assert pids == [app_pid]
        return app_pid
    children = [pid for pid in pids if pid != app_pid]
    assert app_pid in pids and len(children) == 1 and parent_pid(children[0]) == app_pid, (app_pid, pids)
    return children[0]


def process_cpu_seconds(pid):
    """utime + stime of ``pid`` from /proc/<pid>/stat (all its threads)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def app_runs(stderr_text):
    """``{pid: [epoch of each "checkpoint: epoch N" line]}`` from an app's stderr, one entry per app
    process (the client appends every run of a task to the slot's stderr.txt), in order of start."""
    runs = {}
    for pid, message in re.findall(r"^\d\d:\d\d:\d\d \((\d+)\): (.*)$", stderr_text, re.M):
        epochs = runs.setdefault(int(pid), [])
        checkpoint = re.match(r"checkpoint: epoch (\d+)", message)
        if checkpoint:
            epochs.append(int(checkpoint.group(1)))
    return runs


def read_text(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def test_suspend_stops_progress_resume_continues_and_fraction_done_only_rises(live, run_workunit):
    # A checkpoint period longer than the run: an app that reported a checkpoint is preempted by
    # <quit/> instead of <suspend/> (reference §0.6), and this test is about suspension.
    watch = run_workunit("suspend", disk_interval=3600)
    running = watch.until(lambda t: executing(t) and number(t, "fraction done") > 0, 300, "training (fraction done > 0)")
    pid, slot = int(running["PID"]), watch.slot(running)
    trainer = slot_processes_are(live, slot, pid)
    live.task_op(running, "suspend")
    if live.deployment.wrapped:  # the wrapper stops its child with SIGSTOP: nothing to say for the trainer
        heard = lambda t: t.get("active_task_state") == "SUSPENDED" and process_state(trainer) == "T"  # noqa: E731
    else:
        heard = lambda t: t.get("active_task_state") == "SUSPENDED" and "suspended by the client" in read_text(slot / "stderr.txt")  # noqa: E731
    watch.until(heard, 60, "the app to hear <suspend/>")
    cpu_before = process_cpu_seconds(trainer)
    window = watch.observe(STATUS_LAG + SUSPEND_WINDOW)
    cpu_used = process_cpu_seconds(trainer) - cpu_before
    settled = [task for t, task in window if t >= window[0][0] + STATUS_LAG]
    assert len(settled) >= 3, window
    # the wrapper measures its child's CPU time only every 10 s, so its report may still catch up
    reported = ("fraction done",) if live.deployment.wrapped else ("fraction done", "current CPU time")
    assert len({tuple(task[field] for field in reported) for task in settled}) == 1, f"{reported} moved while suspended: {settled}"
    assert cpu_used < 0.5, f"the suspended trainer used {cpu_used:.2f} s CPU in {STATUS_LAG + SUSPEND_WINDOW:.0f} s"
    suspended_cpu = number(settled[-1], "current CPU time")

    live.task_op(running, "resume")
    watch.until(lambda t: executing(t) and number(t, "current CPU time") > suspended_cpu, 60, "CPU time to move again")
    _, result = watch.until_reported()
    assert result["outcome"] == "success", f"{result['validate_message']}\n{live.diagnostics()}"
    pids = {task["PID"] for _, task in watch.seen if "PID" in task}
    assert pids == {str(pid)}, "suspend/resume must not restart the app"
    stderr = live.result_row(result["id"], "stderr_out")
    if not live.deployment.wrapped:
        assert "suspended by the client" in stderr and "resumed by the client" in stderr
    assert list(app_runs(stderr)) == [trainer]

    # fraction done as the client reported it, whole run: from 0, never back, to the end
    fractions = [number(task, "fraction done") for _, task in watch.seen if "fraction done" in task]
    assert fractions[0] == 0.0, fractions
    assert fractions == sorted(fractions), f"fraction done went back: {fractions}"
    assert any(0 < f < 1 for f in fractions), fractions
    finished = [task for _, task in watch.seen if "final elapsed time" in task]
    assert fractions[-1] == 1.0 or (finished and finished[-1]["exit_status"] == "0"), watch.seen[-1]


def resumed_from_checkpoint(live, watch, interrupt):
    """Run a workunit until the client saw a checkpoint, ``interrupt(task, slot, pid)`` its app, and
    check that the task then resumed from that checkpoint; returns ``(result, RunState uploaded)``."""
    before = watch.until(lambda t: executing(t) and number(t, "CPU time at last checkpoint") > 0, 300, "a checkpoint")
    slot, pid = watch.slot(before), int(before["PID"])
    slot_processes_are(live, slot, pid)
    interrupt(before, slot, pid)
    after = watch.until(lambda t: executing(t) and t["PID"] != before["PID"], 180, "the app to run again")
    # the client restarted it from its checkpoint record, not from zero; a restarted wrapper deletes
    # the fraction file and reports 0 until its trainer writes it again (after an epoch)
    if live.deployment.wrapped:
        after = watch.until(lambda t: executing(t) and t["PID"] == after["PID"] and number(t, "fraction done") > 0, 120, "fraction done again")
    assert number(after, "fraction done") >= number(before, "fraction done") > 0
    assert number(after, "elapsed task time") > 0
    restored_cpu = number(after, "CPU time at last checkpoint")
    assert restored_cpu >= number(before, "CPU time at last checkpoint")
    # the restarted app adds the CPU time of the runs before its checkpoint (init_data's wu_cpu_time)
    # to its own: its first status, a second or two after start, already reports more than that
    first_status = watch.until(
        lambda t: executing(t) and t["PID"] == after["PID"] and number(t, "current CPU time") != restored_cpu,
        120, "the restarted app's first status",
    )  # fmt: skip
    assert number(first_status, "current CPU time") > restored_cpu
    _, result = watch.until_reported()
    assert result["outcome"] == "success", f"{result['validate_message']}\n{live.diagnostics()}"
    # the app resumed from its checkpoint: the second process's first checkpoint is a later epoch
    # than the first process's last one (a fresh start would checkpoint epoch 1 again)
    runs = list(app_runs(live.result_row(result["id"], "stderr_out")).values())
    assert len(runs) == 2 and runs[0] and runs[1], runs
    assert runs[1][0] > runs[0][-1], runs
    _, state, attrs = live.uploaded_result(result["id"])
    assert attrs["complete"]
    return result, state


def test_client_quit_and_restart_resume_from_checkpoint(live, run_workunit, reference):
    watch = run_workunit("quit", disk_interval=1)

    def quit_client(task, slot, pid):
        live.stop_client()
        assert live.client.returncode == 0
        assert app_processes(slot) == [], "the client exited but left its app running"
        if not live.deployment.wrapped:  # the wrapper kills its trainer: the trainer says nothing
            assert "quit requested by the client" in read_text(slot / "stderr.txt")
        live.start_client()

    result, state = resumed_from_checkpoint(live, watch, quit_client)
    assert_same_networks(state, reference)


def test_sigkilled_app_is_restarted_from_checkpoint(live, run_workunit, reference):
    watch = run_workunit("sigkill", disk_interval=1)

    def kill_app(task, slot, pid):
        trainer = slot_processes_are(live, slot, pid)
        os.kill(pid, signal.SIGKILL)
        # a killed wrapper leaves its trainer an orphan, which exits by itself (boinc_app.wrapper_files);
        # the client may already have started the next app in the slot
        gone = lambda: all(process_state(p) in (None, "Z") for p in (pid, trainer))  # noqa: E731
        live.wait_for(gone, 30, f"app process {pid} (and its trainer {trainer}) to die")

    result, state = resumed_from_checkpoint(live, watch, kill_app)
    assert_same_networks(state, reference)


def test_abort_is_reported_and_nothing_is_assimilated(live, run_workunit):
    watch = run_workunit("abort", disk_interval=3600, first_index=1)  # a network of its own in the store
    running = watch.until(lambda t: executing(t) and number(t, "current CPU time") > 0, 300, "the app to report status")
    slot, pid = watch.slot(running), int(running["PID"])
    slot_processes_are(live, slot, pid)
    live.task_op(running, "abort")
    # the client would kill it 60 s after <abort/>; the app exits on hearing it (the wrapper kills its trainer)
    live.wait_for(lambda: app_processes(slot) == [], 15, "the app to exit on <abort/>")
    assimilated = lambda: live.result(watch.wu_name)[0]["assimilate_state"] == "done"  # noqa: E731
    live.wait_with_updates(assimilated, 300, "the failed workunit to be reported and assimilated")
    wu, result = live.result(watch.wu_name)
    assert (result["server_state"], result["outcome"], result["exit_status"]) == ("over", "client_error", EXIT_ABORTED_VIA_GUI), result
    assert wu["error_mask"] != 0 and wu["canonical_resultid"] == 0, wu
    if not live.deployment.wrapped:
        assert "aborted by the client" in live.result_row(result["id"], "stderr_out")
    _, tables = DatasetStore(os.path.join(live.project_dir, "store"), "DS1").read()
    aborted = json.loads(live.spec(LONG_EPOCHS, first_index=1, machine=LONG_MACHINE).read_text())["name"]
    stored = {name for table in tables.values() for name in table.columns["workunit"].tolist()}
    assert aborted not in stored, stored


EXIT_CHILD_FAILED = 195  # the wrapper's exit status when its task exits with a non-zero status or a signal


@pytest.mark.parametrize("live", [DEPLOYMENTS[2]], indirect=True)
def test_wrapped_trainer_killed_fails_the_task(live, run_workunit):
    """What an OOM kill of the trainer does under the wrapper: the wrapper sees its child die of a
    signal and ends the task with EXIT_CHILD_FAILED, a client error (the native app, killed, is
    restarted from its checkpoint: ``test_sigkilled_app_is_restarted_from_checkpoint``)."""
    assert live.deployment.wrapped
    watch = run_workunit("trainer_kill", disk_interval=1, first_index=2)
    before = watch.until(lambda t: executing(t) and number(t, "CPU time at last checkpoint") > 0, 300, "a checkpoint")
    slot, pid = watch.slot(before), int(before["PID"])
    os.kill(slot_processes_are(live, slot, pid), signal.SIGKILL)
    live.wait_for(lambda: app_processes(slot) == [], 30, "the wrapper to exit after its trainer")
    live.wait_with_updates(lambda: live.result(watch.wu_name)[1]["server_state"] == "over", 300, "the failed task to be reported")
    _, result = live.result(watch.wu_name)
    assert (result["outcome"], result["exit_status"]) == ("client_error", EXIT_CHILD_FAILED), result
    assert "app exit status: 0x9" in live.result_row(result["id"], "stderr_out")  # the wrapper names the signal


@pytest.mark.parametrize("live", [DEPLOYMENTS[2]], indirect=True)
def test_wrapped_task_aborted_while_suspended_leaves_its_trainer_stopped(live, run_workunit):
    """BOINC's wrapper suspends its child with SIGSTOP; on <abort/> it sends SIGTERM, which a stopped
    process holds pending, and would send SIGKILL 10 s later, but the client kills the wrapper when
    the server acknowledges the aborted result, here 2 s after the abort:
    the trainer stays stopped, an orphan, for good (its parent watch cannot run while it is stopped).
    The native app, suspended, still reads the client's messages and exits on <abort/>."""
    assert live.deployment.wrapped
    watch = run_workunit("abort_suspended", disk_interval=3600, first_index=3)
    running = watch.until(lambda t: executing(t) and number(t, "fraction done") > 0, 300, "training (fraction done > 0)")
    slot, pid = watch.slot(running), int(running["PID"])
    trainer = slot_processes_are(live, slot, pid)
    try:
        live.task_op(running, "suspend")
        live.wait_for(lambda: process_state(trainer) == "T", 60, "the wrapper to stop its trainer")
        live.task_op(running, "abort")
        # report at once (as report_results_immediately does when the client is not backing off): the
        # server's ack makes the client kill the wrapper, within the wrapper's 10 s grace
        live.wait_with_updates(lambda: live.result(watch.wu_name)[1]["server_state"] == "over", 300, "the abort to be reported")
        live.wait_for(lambda: process_state(pid) in (None, "Z"), 60, "the client to end the wrapper")
        assert process_state(trainer) == "T" and parent_pid(trainer) != pid, (process_state(trainer), parent_pid(trainer))
    finally:
        if process_state(trainer) not in (None, "Z"):
            os.kill(trainer, signal.SIGKILL)
    live.wait_for(lambda: process_state(trainer) in (None, "Z"), 30, "the orphan to be killed")
