"""The real trainer in a real BOINC slot, with the test playing the client's side.

``FakeClient`` lays out what the 7.20.5 client lays out (``shared/reference/boinc-protocol.md``
§1): a project directory holding the workunit's files under physical names, a slot holding
``init_data.xml`` in the client's format, an 8192-byte zeroed ``boinc_mmap_file`` and soft-link
files for the logical names, and ``stderr.txt`` opened for appending. It starts
``python -m boinc_app.main spec.json -o result.h5`` in the slot, and a thread does what the
client does every 0.1 s: a heartbeat once a second, queued process-control messages when the
channel is free, and reading status messages (recorded with their arrival time). Every wait polls
with a deadline; the only fixed wait is the 2-second window in which a suspended trainer must use
no CPU.

The workunit is what ``mlds spec --dataset DS1 --machine EightBitMachine --networks 1
--max-epochs 3`` writes, with its training set sized on this machine (fixture ``spec``) so that
each epoch lasts at least ``EPOCH_SECONDS``: the trainer reports progress once per epoch and status
once a second, and the checks below need several statuses per epoch whatever the CPU's speed.
"""

import collections
import dataclasses
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from boinc_app import flops
from boinc_app.boinc_errors import TemporaryExit
from boinc_app.result_file import read_result
from boinc_app.shared_memory import SHARED_MEM_SIZE, SharedMemory, open_mmap_file
from boinc_app.slot_files import take_slot_lock
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.workunit_spec import write_spec
from tests.test_boinc_app_init_data import client_init_data_xml
from tests.test_boinc_app_training import assert_same_networks
from workgen.specs import make_spec, with_data

REPO = Path(__file__).resolve().parents[1]
# never converges within 3 epochs (EightBitMachine needs ~200), even with a training set many times larger
BASE_SPEC = make_spec("DS1", "EightBitMachine", networks=1, max_epochs=3)
EPOCH_SECONDS = 4.0  # each epoch lasts at least four status periods (the trainer reports once a second)
PROJECT = "127.0.0.1_39341"
RESULT_NAME = f"{BASE_SPEC.name}_0_r1234_0"  # the physical name: <result_name>_0 (train_size keeps the name)


class EpochClock:
    """A control that records when each epoch ends (the trainer reports progress once per epoch)."""

    def __init__(self, write_checkpoint=None):
        self.ends = []

    def wait_while_suspended(self):
        pass

    def resumed(self, state, fraction):
        pass

    def report_progress(self, state, fraction):
        self.ends.append(time.monotonic())

    def quit_requested(self):
        return False

    def checkpoint_due(self):
        return False


def epoch_seconds(spec, directory):
    """Wall time of one training epoch of ``spec`` here: from the end of epoch 1 to the end of epoch 2."""
    write_spec(dataclasses.replace(spec, max_epochs=2, epoch_budget=2), directory / "spec.json")
    clock = EpochClock()
    run_trainer(TrainerConfig(str(directory / "spec.json"), str(directory / "result.h5")), lambda _: clock)
    first, second = clock.ends[:2]
    return second - first


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """``BASE_SPEC`` with a training set large enough that an epoch takes ``EPOCH_SECONDS`` here.

    An epoch's time grows with the training set (the validation set is fixed), so scaling the set
    by the shortfall makes an epoch at least that long; a machine already that slow keeps the base."""
    measured = epoch_seconds(BASE_SPEC, tmp_path_factory.mktemp("calibration"))
    if measured >= EPOCH_SECONDS:
        return BASE_SPEC
    return with_data(BASE_SPEC, train_size=math.ceil(BASE_SPEC.data.train_size * EPOCH_SECONDS / measured))


def status_fields(message):
    return {name: float(value) for name, value in re.findall(r"<(\w+)>([^<]*)</\1>", message)}


def process_cpu_seconds(pid):
    """utime + stime of ``pid`` from /proc (what the kernel charged it, all threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FakeClient:
    """The client's side of one slot (see the module docstring)."""

    def __init__(self, root, spec, **init_fields):
        self.spec = spec
        self.project = root / "projects" / PROJECT
        self.slot = root / "slots" / "0"
        self.project.mkdir(parents=True)
        self.slot.mkdir(parents=True)
        write_spec(spec, self.project / f"{spec.name}_spec")
        self.result = self.project / RESULT_NAME
        for logical, physical in (("spec.json", f"{spec.name}_spec"), ("result.h5", RESULT_NAME)):
            (self.slot / logical).write_text(f"<soft_link>../../projects/{PROJECT}/{physical}</soft_link>\n")
        self.init_fields = {
            "project_dir": str(self.project), "boinc_dir": str(root), "wu_name": spec.name,
            "result_name": RESULT_NAME[:-2], "client_pid": os.getpid(), "checkpoint_period": 1.0, **init_fields,
        }  # fmt: skip
        self.process = None
        # what the client starts in the slot (tests/test_packaging_freeze.py: the frozen trainer)
        self.command = [sys.executable, "-m", "boinc_app.main"]
        self.env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(self, heartbeats=True, scheduler_args=(), **init_fields):
        """What the client does before each start, then start the app and serve it
        (``scheduler_args``: what the app version's plan class appends to the command line)."""
        (self.slot / "init_data.xml").write_text(client_init_data_xml(**{**self.init_fields, **init_fields}))
        (self.slot / "boinc_mmap_file").write_bytes(bytes(SHARED_MEM_SIZE))
        for stale in ("boinc_finish_called", "boinc_temporary_exit"):
            (self.slot / stale).unlink(missing_ok=True)
        self.memory = SharedMemory(open_mmap_file(str(self.slot / "boinc_mmap_file")))
        self.statuses, self.pending, self.heartbeats = [], collections.deque(), heartbeats
        env = {**self.env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(self.slot / "stderr.txt", "ab") as stderr:
            self.process = subprocess.Popen(
                [*self.command, "spec.json", "-o", "result.h5", *scheduler_args],
                cwd=self.slot, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            )  # fmt: skip
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self):
        last_heartbeat = 0.0
        while self.process.poll() is None:
            now = time.monotonic()
            if self.heartbeats and now - last_heartbeat >= 1.0:
                self.memory.heartbeat.send("<heartbeat/><wss>1.000000e+08</wss><max_wss>4.000000e+09</max_wss>")
                last_heartbeat = now
            if self.pending and self.memory.process_control_request.send(self.pending[0]):
                self.pending.popleft()
            self._read_status(now)
            time.sleep(0.05)
        self._read_status(time.monotonic())  # the client reads it once more when the app exits

    def _read_status(self, now):
        message = self.memory.app_status.receive()
        if message is not None:
            self.statuses.append((now, status_fields(message)))

    def send(self, message):
        self.pending.append(message)

    def delivered(self):
        return not self.pending and not self.memory.process_control_request.has_message()

    def wait_for(self, condition, timeout=90.0):
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"trainer exited {self.process.returncode}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"timed out; stderr:\n{self.stderr()}"
            time.sleep(0.05)

    def wait(self, timeout=120.0):
        code = self.process.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return code

    def reported(self, name):
        return [fields[name] for _, fields in self.statuses if name in fields]

    def stderr(self):
        return (self.slot / "stderr.txt").read_text(errors="replace")

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def client(tmp_path, spec):
    made = []

    def make(**init_fields):
        made.append(FakeClient(tmp_path, spec, **init_fields))
        return made[-1]

    yield make
    for each in made:
        each.kill()


def wait_until_cpu_idle(pid, deadline_seconds=20.0):
    """Poll /proc until the process used (almost) no CPU over half a second."""
    deadline = time.monotonic() + deadline_seconds
    before = process_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        after = process_cpu_seconds(pid)
        if after - before < 0.03:
            return True
        before = after
    return False


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, spec):
    """An uninterrupted task with a suspension after the first checkpoint (one run, many checks)."""
    fake = FakeClient(tmp_path_factory.mktemp("full"), spec, fraction_done_start=0.1, fraction_done_end=0.9)
    try:
        fake.start()
        fake.wait_for(lambda: any(c > 0 for c in fake.reported("checkpoint_cpu_time")))
        with pytest.raises(TemporaryExit, match="slot directory lock"):
            take_slot_lock(str(fake.slot), wait=0)  # the trainer holds the slot
        fake.send("<suspend/>")
        fake.wait_for(fake.delivered)
        suspended_at = time.monotonic()
        assert wait_until_cpu_idle(fake.process.pid), "the suspended trainer kept using CPU"
        window = (time.monotonic(), process_cpu_seconds(fake.process.pid))
        time.sleep(2.0)  # the observation window, not a synchronisation
        window += (time.monotonic(), process_cpu_seconds(fake.process.pid))
        fake.send("<resume/>")
        fake.wait_for(fake.delivered)
        resumed_at = time.monotonic()
        code = fake.wait()
    finally:
        fake.kill()
    return fake, code, suspended_at, window, resumed_at


@pytest.mark.slow
def test_finished_task_writes_result_then_finish_file(full_run):
    fake, code, *_ = full_run
    assert code == 0, fake.stderr()
    assert (fake.slot / "boinc_finish_called").read_text() == "0\n"
    _, state, attrs = read_result(fake.result, spec=fake.spec)  # written through the soft link
    assert attrs["complete"] and [n.epochs for n in state.networks] == [3]
    assert (fake.slot / "result.h5").read_text().startswith("<soft_link>")  # the link is intact
    assert not (fake.slot / "result.h5.checkpoint").exists()
    assert "BOINC mode" in fake.stderr() and "finished" in fake.stderr()


@pytest.mark.slow
def test_status_arrives_every_second_with_progress_only_rising(full_run):
    fake, _, suspended_at, _, resumed_at = full_run
    times = [t for t, _ in fake.statuses]
    running = [b - a for a, b in zip(times, times[1:]) if b < suspended_at or a > resumed_at]
    assert len(running) >= 8
    assert sorted(running)[len(running) // 2] == pytest.approx(1.0, abs=0.25)  # median gap
    assert max(running[:-1]) < 3.0  # (the last one is the final status at exit)
    fractions = fake.reported("fraction_done")
    assert fractions == sorted(fractions) and len(set(fractions)) >= 3
    assert fractions[0] > 0.1 and fractions[-1] == pytest.approx(0.9)  # mapped into [0.1, 0.9]
    cpu = fake.reported("current_cpu_time")
    assert cpu == sorted(cpu) and cpu[-1] > cpu[0]


@pytest.mark.slow
def test_checkpoint_cpu_time_is_zero_until_a_checkpoint_and_fpops_rise(full_run):
    fake, *_ = full_run
    checkpoints = fake.reported("checkpoint_cpu_time")
    first = next(i for i, c in enumerate(checkpoints) if c > 0)
    assert first > 0 and set(checkpoints[:first]) == {0.0}
    assert checkpoints[first:] == sorted(checkpoints[first:])
    for _, fields in fake.statuses:
        assert fields["checkpoint_cpu_time"] <= fields["current_cpu_time"]
    fpops = fake.reported("fpops_cumulative")
    assert fpops == sorted(fpops) and len(set(fpops)) == 3
    epochs = [flops.network_epoch_flops(fake.spec, e) for e in range(3)]
    assert [value for value in sorted(set(fpops))] == pytest.approx([sum(epochs[:k]) for k in (1, 2, 3)], rel=1e-6)


@pytest.mark.slow
def test_suspend_stops_training_and_its_reports_resume_continues(full_run):
    fake, code, suspended_at, (start, cpu_start, end, cpu_end), resumed_at = full_run
    assert cpu_end - cpu_start < 0.15  # blocked, not polling
    assert not [t for t, _ in fake.statuses if start <= t <= end]  # no status while suspended
    before = [f for t, f in fake.statuses if t < suspended_at][-1]
    after_time, after = next((t, f) for t, f in fake.statuses if t > resumed_at)
    before_time = [t for t, _ in fake.statuses if t < suspended_at][-1]
    assert after["current_cpu_time"] - before["current_cpu_time"] < (after_time - before_time) - 1.5
    assert after.get("fraction_done") == before.get("fraction_done")  # the same epoch continues
    assert code == 0


@pytest.mark.slow
def test_quit_checkpoints_and_the_restarted_task_ends_bitwise_identical(client, full_run):
    fake = client().start()
    fake.wait_for(lambda: any(c > 0 for c in fake.reported("checkpoint_cpu_time")))
    fake.send("<quit/>")
    assert fake.wait(timeout=60) == 0
    assert not (fake.slot / "boinc_finish_called").exists() and not fake.result.exists()
    _, saved, _ = read_result(fake.slot / "result.h5.checkpoint", spec=fake.spec)
    assert saved.networks[0].epochs in (1, 2)
    checkpoints = sorted(set(c for c in fake.reported("checkpoint_cpu_time") if c > 0))
    assert len(checkpoints) == saved.networks[0].epochs  # each one reached the client, the last too
    assert "stopped on the client's request" in fake.stderr()
    checkpoint_cpu = fake.reported("checkpoint_cpu_time")[-1]
    fake.start(wu_cpu_time=checkpoint_cpu)  # the client passes the CPU time of the last checkpoint
    assert fake.wait() == 0, fake.stderr()
    assert fake.statuses[0][1]["checkpoint_cpu_time"] == pytest.approx(checkpoint_cpu, rel=1e-5)
    assert fake.statuses[0][1]["current_cpu_time"] > checkpoint_cpu
    assert (fake.slot / "boinc_finish_called").read_text() == "0\n"
    _, resumed, _ = read_result(fake.result, spec=fake.spec)
    _, uninterrupted, _ = read_result(full_run[0].result, spec=fake.spec)
    assert_same_networks(resumed, uninterrupted)


@pytest.mark.slow
def test_abort_exits_194_and_writes_no_output(client):
    fake = client().start()
    fake.wait_for(lambda: fake.statuses)
    fake.send("<abort/>")
    assert fake.wait(timeout=60) == 194
    assert not fake.result.exists()
    assert not (fake.slot / "boinc_finish_called").exists()
    assert "aborted by the client" in fake.stderr()


def test_options_the_scheduler_adds_for_a_plan_class_are_accepted(client):
    """plan_class_spec's mt classes make BOINC's scheduler append ``--nthreads N`` and
    ``--memory_size_mb M`` to the app's command line; the trainer must run, not fail on them."""
    fake = client().start(scheduler_args=("--nthreads", "2", "--memory_size_mb", "800"))
    fake.wait_for(lambda: fake.statuses)
    fake.send("<abort/>")
    assert fake.wait(timeout=60) == 194
    assert "No such option" not in fake.stderr()


@pytest.mark.slow
def test_trainer_exits_when_the_client_process_is_gone(client):
    gone = subprocess.Popen(["true"])
    gone.wait()
    fake = client(client_pid=gone.pid).start()
    assert fake.wait(timeout=60) == 0
    assert not (fake.slot / "boinc_finish_called").exists() and not fake.result.exists()
    assert f"pid {gone.pid}) no longer exists" in fake.stderr()


@pytest.mark.slow
def test_missing_gpu_is_a_temporary_exit(client):
    fake = client(gpu_type="NVIDIA", gpu_device_num=7, gpu_usage=1.0).start()
    assert fake.wait(timeout=60) == 0
    delay, reason = (fake.slot / "boinc_temporary_exit").read_text().splitlines()
    assert delay == "300" and "NVIDIA GPU 7" in reason
    assert not (fake.slot / "boinc_finish_called").exists() and not fake.result.exists()


@pytest.mark.slow
def test_sysv_shared_memory_is_a_permanent_error_naming_the_fix(client):
    fake = client(shm_key=16826565).start()
    assert fake.wait(timeout=60) == 1
    assert (fake.slot / "boinc_finish_called").read_text() == "1\n"
    assert "<api_version>7.20.0</api_version>" in fake.stderr()
