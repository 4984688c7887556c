"""The control of a training run under a BOINC client: shared-memory messages, one timer thread.

The training loop sees the same interface as ``boinc_app.standalone.StandaloneControl``
(``wait_while_suspended``, ``report_progress``, ``quit_requested``, ``checkpoint_due``,
``checkpoint``); here the answers come from the client. As in the C API (``api/boinc_api.cpp``,
``timer_handler``; ``shared/reference/boinc-protocol.md`` §1.4, §1.6), a daemon timer thread
wakes every 0.1 s and

- reads the heartbeat channel. With no heartbeat for 30 s, or (Unix) once the client's process
  (``client_pid``) is gone, the client is dead and the app exits at once with status 0: no
  checkpoint is needed, the task is restarted from its last one when the client runs again. (The
  7.20 API checks only the pid when it knows it, the heartbeat otherwise; both are checked here.)
- reads process-control requests. They are requests only, the client never stops the process:
  ``<suspend/>`` pauses training at the next batch boundary, blocked on an Event (no CPU);
  ``<resume/>`` releases it; ``<abort/>`` exits 194 at once and writes nothing; ``<quit/>`` makes
  training stop at the next batch boundary. The epoch in progress is then *abandoned*, not
  finished: the client kills the app 60 s after ``<quit/>`` and one epoch of a large workunit can
  take longer, while the networks' states change only when an epoch completes, so the state at
  hand is the last completed epoch. It is checkpointed (unless that epoch already is) and the app
  exits 0, the API's "restart me later" (the client ignores the exit status of a task it asked to
  quit). Resume stays exact; at most one epoch is recomputed.
- once a second, unless suspended (the API sends nothing while suspended either), sends a status
  message if the channel is free: ``current_cpu_time`` (process CPU time plus ``wu_cpu_time``,
  the CPU time of earlier runs up to their last checkpoint), ``checkpoint_cpu_time`` (that total
  at this run's last checkpoint; it starts at ``wu_cpu_time``, 0 for a fresh task, and changes
  only when a checkpoint is really written: a non-zero value makes the client quit the task,
  instead of suspending it, on preemption), ``fraction_done`` mapped into
  [fraction_done_start, fraction_done_end] and ``fpops_cumulative`` (``boinc_app.flops``), each
  of the last two only once known (the client ignores a fraction of 0 and keeps its last value).

``finish()`` stops the thread and sends a last status with fraction done 1 (the API sleeps 2 s
for the same purpose); ``send_last_status()`` does the same after the quit checkpoint. Exiting, and the codes, are up to the caller (``boinc_app.main``): the
thread only calls ``hard_exit(kind, message)`` with kind ``"abort"``, ``"client_gone"`` or
``"failure"`` (a bug in this thread).
"""

import os
import sys
import threading
import time
import traceback

from boinc_app.training import QuitRequested

TICK_SECONDS = 0.1
STATUS_SECONDS = 1.0
HEARTBEAT_GIVEUP_SECONDS = 30.0
FINAL_STATUS_WAIT_SECONDS = 2.0


def log(message, stream=None):
    """A stderr line with BOINC's prefix (time and pid), as the C API writes them."""
    print(f"{time.strftime('%H:%M:%S')} ({os.getpid()}): {message}", file=stream or sys.stderr, flush=True)


def process_alive(pid):
    """Whether ``pid`` exists (Unix). On Windows ``os.kill`` would *terminate* it: never call it."""
    if sys.platform == "win32" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (sandboxed clients)
        return True
    return True


class BoincControl:
    """Training control fed by the client's shared memory (see the module docstring)."""

    def __init__(self, init_data, shared_memory, hard_exit, count_flops=None, clock=time.monotonic,
                 cpu_time=time.process_time, heartbeat_giveup=HEARTBEAT_GIVEUP_SECONDS, stream=None):  # fmt: skip
        self._init, self._shm, self._hard_exit = init_data, shared_memory, hard_exit
        self._count_flops, self._clock, self._cpu_time = count_flops, clock, cpu_time
        self._giveup, self._stream = heartbeat_giveup, stream
        self._write_checkpoint = None
        self._resumed, self._quit, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._resumed.set()
        self._thread = None
        now = clock()
        self._last_heartbeat = self._last_status = self._last_checkpoint = now
        self._checkpoint_cpu = init_data.wu_cpu_time
        self._fraction = self._fpops = None
        self._reports = self._reports_at_checkpoint = 0

    # -- the training thread's side -------------------------------------------------------------

    def bind(self, write_checkpoint):
        """Set how to write a checkpoint; returns self (``run_trainer``'s control factory)."""
        self._write_checkpoint = write_checkpoint
        return self

    def wait_while_suspended(self):
        """Block while suspended; raise ``QuitRequested`` once the client asked to quit."""
        if self._quit.is_set():
            raise QuitRequested()
        if not self._resumed.is_set():
            self._resumed.wait()
            if self._quit.is_set():
                raise QuitRequested()

    def resumed(self, state, fraction):
        """A resumed task reports where it stands from the first status message on (not counted as
        an epoch's report: no checkpoint is owed for it). A fresh one stays unknown (the client
        ignores 0)."""
        if fraction > 0:
            self._fraction = float(fraction)

    def report_progress(self, state, fraction):
        self._fraction = float(fraction)
        if self._count_flops is not None:
            self._fpops = float(self._count_flops(state))
        self._reports += 1

    def quit_requested(self):
        return self._quit.is_set()

    def checkpoint_due(self):
        return self._clock() - self._last_checkpoint >= self._init.checkpoint_seconds

    def checkpoint(self, state):
        """Write ``state`` unless no epoch completed since the last checkpoint (or the start)."""
        if self._reports == self._reports_at_checkpoint:
            return
        self._write_checkpoint(state)
        self._last_checkpoint = self._clock()
        self._reports_at_checkpoint = self._reports
        self._checkpoint_cpu = self.current_cpu_time()
        epochs = max(n.epochs for n in state.networks)
        log(f"checkpoint: epoch {epochs}, CPU time {self._checkpoint_cpu:.1f} s", self._stream)

    def current_cpu_time(self):
        return self._init.wu_cpu_time + self._cpu_time()

    @property
    def suspended(self):
        return not self._resumed.is_set()

    # -- the timer thread ------------------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._run, name="boinc-timer", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _run(self):
        try:
            while not self._stop.wait(TICK_SECONDS):
                self.poll()
        except Exception:  # noqa: BLE001 - a dead timer thread would leave the client unheard
            self._hard_exit("failure", f"BOINC timer thread failed:\n{traceback.format_exc()}")

    def poll(self, now=None):
        """One timer tick: messages every tick, client check and status once a second."""
        now = self._clock() if now is None else now
        self._read_heartbeat(now)
        self._read_process_control()
        if now - self._last_status < STATUS_SECONDS:
            return
        self._last_status = now
        self._check_client(now)
        if not self.suspended:
            self._shm.app_status.send(self.status_message())

    def _read_heartbeat(self, now):
        message = self._shm.heartbeat.receive()
        if message is not None and "<heartbeat/>" in message:
            self._last_heartbeat = now

    def _read_process_control(self):
        message = self._shm.process_control_request.receive()
        if message is None:
            return
        if "<suspend/>" in message:
            self._resumed.clear()
            log("suspended by the client", self._stream)
        if "<resume/>" in message:
            self._resumed.set()
            log("resumed by the client", self._stream)
        if "<quit/>" in message:
            log("quit requested by the client", self._stream)
            self._quit.set()
            self._resumed.set()  # wake a suspended training loop so it can stop
        if "<abort/>" in message:
            self._hard_exit("abort", "aborted by the client")

    def _check_client(self, now):
        if now - self._last_heartbeat > self._giveup:
            self._hard_exit("client_gone", f"no heartbeat from the client for {self._giveup:.0f} s - exiting")
        elif not process_alive(self._init.client_pid):
            self._hard_exit("client_gone", f"BOINC client (pid {self._init.client_pid}) no longer exists - exiting")

    def status_message(self):
        """The app_status message, formatted as the C API formats it (``%e``)."""
        lines = [
            f"<current_cpu_time>{self.current_cpu_time():e}</current_cpu_time>",
            f"<checkpoint_cpu_time>{self._checkpoint_cpu:e}</checkpoint_cpu_time>",
        ]
        if self._fraction is not None:
            lines.append(f"<fraction_done>{self._init.overall_fraction(self._fraction):e}</fraction_done>")
        if self._fpops is not None:
            lines.append(f"<fpops_cumulative>{self._fpops:e}</fpops_cumulative>")
        return "\n".join(lines) + "\n"

    def finish(self):
        """Before exiting after the task is done: last status with fraction done 1."""
        self._fraction = 1.0
        self.send_last_status()

    def send_last_status(self):
        """Stop the timer thread and send a last status, waiting up to 2 s for the channel. The
        client reads the channel once more when it sees the app exit, so a checkpoint made just
        before exiting (on quit) still reaches it as ``checkpoint_cpu_time``, and becomes
        ``wu_cpu_time`` at the next start. (A client that is itself shutting down does not read
        it any more: the restart then starts from the CPU time of the checkpoint before, as with
        the C API.)"""
        self.stop()
        deadline = self._clock() + FINAL_STATUS_WAIT_SECONDS
        while not self._shm.app_status.send(self.status_message()) and self._clock() < deadline:
            time.sleep(0.05)
