"""Shared-memory channels and the BOINC control, in-process (the client's side played by the test)."""

import mmap
import os
import re
import subprocess
import threading

import pytest

from boinc_app import training
from boinc_app.boinc_control import BoincControl
from boinc_app.boinc_errors import SharedMemoryError
from boinc_app.init_data import InitData
from boinc_app.result_file import read_result, write_result
from boinc_app.shared_memory import (
    CHANNEL_SIZE, SHARED_MEM_SIZE, SharedMemory, attach, open_mmap_file, windows_mapping_names,
)  # fmt: skip
from boinc_app.task_data import task_data
from tests.conftest import SilentControl
from tests.test_boinc_app_training import assert_same_networks
from workgen.specs import make_spec, with_data


def status_fields(message):
    return {name: float(value) for name, value in re.findall(r"<(\w+)>([^<]*)</\1>", message)}


# -- channels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bytearray", "anonymous mmap"])
def test_channel_flag_protocol_over_any_buffer(kind):
    """The same channel code serves the Unix file mapping and the Windows named mapping."""
    buffer = bytearray(SHARED_MEM_SIZE) if kind == "bytearray" else mmap.mmap(-1, SHARED_MEM_SIZE)
    app, client = SharedMemory(buffer), SharedMemory(buffer)
    assert app.app_status.receive() is None
    assert app.app_status.send("<current_cpu_time>1.0</current_cpu_time>\n")
    assert buffer[5 * CHANNEL_SIZE] == 1 and bytes(buffer[5 * CHANNEL_SIZE + 1 : 5 * CHANNEL_SIZE + 2]) == b"<"
    assert not app.app_status.send("second")  # the client has not read the first one yet
    assert client.app_status.receive() == "<current_cpu_time>1.0</current_cpu_time>\n"
    assert buffer[5 * CHANNEL_SIZE] == 0 and client.app_status.receive() is None
    assert app.app_status.send("x" * 5000)
    assert client.app_status.receive() == "x" * (CHANNEL_SIZE - 2)  # 1022 characters and a NUL
    assert not any(buffer[i * CHANNEL_SIZE] for i in range(8))


def test_channels_sit_at_the_clients_offsets():
    buffer = bytearray(SHARED_MEM_SIZE)
    memory = SharedMemory(buffer)
    names = ["process_control_request", "process_control_reply", "graphics_request", "graphics_reply",
             "heartbeat", "app_status", "trickle_up", "trickle_down"]  # fmt: skip
    for index, name in enumerate(names):
        offset = index * CHANNEL_SIZE
        buffer[offset + 1 : offset + 6] = b"<hi/>"
        buffer[offset] = 1
        assert getattr(memory, name).receive() == "<hi/>", name


def test_windows_mapping_names_try_global_first():
    assert windows_mapping_names("boinc_3") == ("Global\\shm_boinc_3", "shm_boinc_3")


def test_mmap_file_is_shared_between_client_and_app(tmp_path):
    path = tmp_path / "boinc_mmap_file"
    path.write_bytes(bytes(SHARED_MEM_SIZE))
    app, client = SharedMemory(open_mmap_file(str(path))), SharedMemory(open_mmap_file(str(path)))
    assert client.process_control_request.send("<suspend/>")
    assert app.process_control_request.receive() == "<suspend/>"
    assert path.read_bytes()[0] == 0  # cleared in the file itself


def test_unusable_shared_memory_is_refused_with_the_reason(tmp_path):
    with pytest.raises(SharedMemoryError, match="cannot open"):
        open_mmap_file(str(tmp_path / "boinc_mmap_file"))
    (tmp_path / "boinc_mmap_file").write_bytes(bytes(100))
    with pytest.raises(SharedMemoryError, match="100 bytes, expected 8192"):
        attach(InitData(shm_key=-1), str(tmp_path))
    with pytest.raises(SharedMemoryError, match="api_version"):
        attach(InitData(shm_key=16826565), str(tmp_path))


# -- the control, driven tick by tick -------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Harness:
    """A BoincControl over a bytearray, with fake wall clock and CPU time; records hard exits."""

    def __init__(self, **init):
        self.clock, self.cpu = Clock(), [2.0]
        self.exits, self.written = [], []
        self.buffer = bytearray(SHARED_MEM_SIZE)
        self.client = SharedMemory(self.buffer)
        self.control = BoincControl(
            InitData(shm_key=-1, **init), SharedMemory(self.buffer), lambda kind, message: self.exits.append(kind),
            count_flops=lambda state: 1e9, clock=self.clock, cpu_time=lambda: self.cpu[0],
        ).bind(self.written.append)  # fmt: skip

    def tick(self, seconds, heartbeat=True):
        """Advance ``seconds`` in 0.1 s ticks, the client sending a heartbeat every second."""
        for step in range(round(seconds * 10)):
            self.clock.now += 0.1
            if heartbeat and step % 10 == 0:
                self.client.heartbeat.send("<heartbeat/><wss>1.0e+08</wss><max_wss>4.0e+09</max_wss>")
            self.control.poll()

    def status(self):
        message = self.client.app_status.receive()
        return None if message is None else status_fields(message)


def test_status_once_a_second_with_checkpoint_cpu_time_only_after_a_real_checkpoint():
    h = Harness(wu_cpu_time=5.0, fraction_done_start=0.5, fraction_done_end=1.0, checkpoint_period=60)
    h.tick(0.5)
    assert h.status() is None  # the first status comes after one second
    h.tick(0.6)
    assert h.status() == {"current_cpu_time": 7.0, "checkpoint_cpu_time": 5.0}  # restart: wu_cpu_time
    h.control.report_progress(None, 0.5)
    h.cpu[0] = 3.0
    h.tick(1.0)
    assert h.status() == {"current_cpu_time": 8.0, "checkpoint_cpu_time": 5.0, "fraction_done": 0.75,
                          "fpops_cumulative": 1e9}  # fmt: skip
    assert not h.control.checkpoint_due()
    h.clock.now += 60
    assert h.control.checkpoint_due()


def test_checkpoint_sets_checkpoint_cpu_time_and_is_skipped_when_no_epoch_completed():
    h = Harness()
    state = training.initial_state(make_spec("DS1", "SingleDirectMachine", networks=1, max_epochs=1))
    h.control.checkpoint(state)  # nothing trained in this run: nothing to write
    assert h.written == []
    h.control.report_progress(state, 0.0)
    h.cpu[0] = 4.5
    h.control.checkpoint(state)
    assert h.written == [state]
    h.tick(1.0)
    assert h.status()["checkpoint_cpu_time"] == 4.5
    h.control.checkpoint(state)
    assert len(h.written) == 1


def test_a_resumed_task_reports_its_fraction_from_the_first_status_and_owes_no_checkpoint():
    h = Harness(fraction_done_start=0.0, fraction_done_end=1.0)
    state = training.initial_state(make_spec("DS1", "SingleDirectMachine", networks=1, max_epochs=1))
    h.control.resumed(state, 0.4)  # restarted from a checkpoint 40 % through the workunit
    h.tick(1.1)
    assert h.status()["fraction_done"] == pytest.approx(0.4)
    h.control.checkpoint(state)
    assert h.written == []  # no epoch trained since the start: the checkpoint on disk stands
    fresh = Harness()
    fresh.control.resumed(state, 0.0)
    fresh.tick(1.1)
    assert "fraction_done" not in fresh.status()  # unknown, as before any epoch (the client ignores 0)


def test_suspend_blocks_training_without_status_resume_releases_it():
    h = Harness()
    h.client.process_control_request.send("<suspend/>")
    h.tick(0.1)
    assert h.control.suspended and not h.client.process_control_request.has_message()
    blocked = threading.Thread(target=h.control.wait_while_suspended)
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive()  # still waiting on the Event
    h.tick(3.0)
    assert h.status() is None  # no status while suspended, as the C API
    h.client.process_control_request.send("<resume/>")
    h.tick(1.0)
    blocked.join(timeout=10)
    assert not blocked.is_alive() and not h.control.suspended
    assert h.status() is not None


def test_quit_wakes_a_suspended_loop_and_raises_quit_requested():
    h = Harness()
    h.client.process_control_request.send("<suspend/>")
    h.tick(0.1)
    raised = []

    def training_loop():
        try:
            h.control.wait_while_suspended()
        except training.QuitRequested:
            raised.append(True)

    loop = threading.Thread(target=training_loop)
    loop.start()
    h.client.process_control_request.send("<quit/>")
    h.tick(0.1)
    loop.join(timeout=10)
    assert raised == [True] and h.control.quit_requested() and h.exits == []


def test_abort_exits_at_once():
    h = Harness()
    h.client.process_control_request.send("<abort/>")
    h.tick(0.1)
    assert h.exits == ["abort"]


def test_no_heartbeat_for_30_seconds_means_the_client_is_gone():
    h = Harness()
    h.tick(29.0, heartbeat=False)
    assert h.exits == []
    h.tick(2.0, heartbeat=False)
    assert h.exits[:1] == ["client_gone"]
    alive = Harness()
    alive.tick(40.0)
    assert alive.exits == []


def test_a_dead_client_pid_means_the_client_is_gone():
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = Harness(client_pid=finished.pid)
    dead.tick(1.1)
    assert dead.exits == ["client_gone"]
    alive = Harness(client_pid=os.getpid())
    alive.tick(1.1)
    assert alive.exits == []


def test_timer_thread_exits_on_heartbeat_loss_for_real(tmp_path):
    """The real thread and clock over a real mmap file; only the give-up time is shortened."""
    path = tmp_path / "boinc_mmap_file"
    path.write_bytes(bytes(SHARED_MEM_SIZE))
    gone = threading.Event()
    control = BoincControl(
        InitData(shm_key=-1), SharedMemory(open_mmap_file(str(path))), lambda kind, message: gone.set(),
        heartbeat_giveup=0.5,
    ).start()  # fmt: skip
    try:
        assert gone.wait(timeout=10)
    finally:
        control.stop()


def test_finish_sends_fraction_done_one():
    h = Harness(fraction_done_start=0.1, fraction_done_end=0.9)
    h.control.finish()
    assert h.status()["fraction_done"] == pytest.approx(0.9)


# -- quit in the middle of an epoch ---------------------------------------------------------------

SMALL = with_data(make_spec("DS1", "SingleDirectMachine", networks=2, seed=5, max_epochs=3), train_size=320, validation_size=64)


class QuitMidEpoch(BoincControl):
    """Delivers ``<quit/>`` from the 'client' at the ``at``-th pause point of the training loop."""

    def __init__(self, at, **kwargs):
        self.client = SharedMemory(bytearray(SHARED_MEM_SIZE))
        super().__init__(InitData(shm_key=-1, checkpoint_period=1e9), self.client, lambda *a: None, **kwargs)
        self.at, self.calls = at, 0

    def wait_while_suspended(self):
        self.calls += 1
        if self.calls == self.at:
            self.client.process_control_request.send("<quit/>")
            self.poll()
        super().wait_while_suspended()


def test_quit_mid_epoch_checkpoints_the_last_completed_epoch_and_resume_is_exact(tmp_path):
    data = task_data(SMALL)
    uninterrupted = training.train(SMALL, data, training.initial_state(SMALL), SilentControl())
    path = tmp_path / "checkpoint.h5"
    batches = 320 // SMALL.recipe.batch_size
    control = QuitMidEpoch(at=(batches + 1) + 5).bind(lambda s: write_result(path, SMALL, s, complete=False))
    with pytest.raises(training.QuitRequested):
        training.train(SMALL, data, training.initial_state(SMALL), control)
    _, saved, _ = read_result(path, spec=SMALL)
    assert [n.epochs for n in saved.networks] == [1, 1]  # epoch 2 was abandoned, epoch 1 kept
    resumed = training.train(SMALL, data, saved, SilentControl())
    assert_same_networks(resumed, uninterrupted)
