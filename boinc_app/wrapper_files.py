"""Wrapper mode: the trainer as a task of BOINC's ``wrapper`` (``samples/wrapper/wrapper.cpp``).

Under the wrapper, the wrapper is the BOINC app: it owns init_data.xml, the shared memory and the
slot lock, and runs the trainer as a plain child process (suspending it with SIGTSTP/SIGCONT and
killing it on quit or abort). The trainer must then *not* speak the app protocol itself, and
tells the wrapper about progress through two files named in the wrapper's ``job.xml`` task
(``shared/reference/boinc-protocol.md`` §2):

``<fraction_done_filename>``
    The wrapper reads the last number in the file's last ~32 bytes (0..1) about once a second and
    deletes the file when the task starts. The trainer rewrites it atomically after each epoch
    with one line such as ``0.333333``.
``<checkpoint_filename>``
    The wrapper watches the file's *modification time* (whole seconds): each change counts as a
    checkpoint and the wrapper reports checkpoint CPU time to the client. The first time the
    wrapper sees the file only sets its baseline, so the trainer creates the file at start (when
    missing) and replaces it after each real checkpoint.

The wrapper kills its child on quit and abort, but a wrapper that is itself killed (SIGKILL, the
OOM killer) leaves the trainer running, and the client then starts a new wrapper in the same slot,
whose trainer would race the orphan on the checkpoint file. ``watch_parent`` ends the orphan: a
daemon thread sees the parent process change and exits at once; ``WrapperControl.checkpoint``
checks the parent too before it writes.

Wrapper mode is selected by ``--wrapper-fraction-file NAME`` and/or
``--wrapper-checkpoint-file NAME`` on the trainer's command line (give the same names as in
job.xml). It is standalone mode otherwise (``boinc_app.standalone``), with logical file names
resolved in the slot and the trainer's own checkpoint kept in the slot, as in BOINC mode.
"""

import os
import signal
import threading
import time

from boinc_app.atomic_file import write_atomically
from boinc_app.boinc_control import log
from boinc_app.standalone import StandaloneControl


def watch_parent(parent, on_gone, period=1.0):
    """Call ``on_gone(parent)`` from a daemon thread once this process's parent is no longer
    ``parent`` (it died; the orphan was re-parented). ``on_gone`` is expected to exit the process."""

    def watch():
        while os.getppid() == parent:
            time.sleep(period)
        on_gone(parent)

    thread = threading.Thread(target=watch, name="mlds-parent-watch", daemon=True)
    thread.start()
    return thread


def write_fraction_done(path, fraction):
    """Replace ``path`` with one line holding ``fraction`` clamped to [0, 1]."""
    write_atomically(path, f"{min(max(float(fraction), 0.0), 1.0):.6f}\n".encode("ascii"))


def mark_checkpoint(path, epochs):
    """Replace the checkpoint file: a new modification time tells the wrapper we checkpointed."""
    write_atomically(path, f"mlds checkpoint: epoch {epochs} at {time.time():.3f}\n".encode("ascii"))


class WrapperControl(StandaloneControl):
    """Standalone control that also writes the wrapper's fraction-done and checkpoint files and
    answers the wrapper's signals (``install_signal_handlers``); ``on_terminate()`` exits the process."""

    def __init__(self, write_checkpoint, checkpoint_period=60.0, fraction_file=None, checkpoint_file=None, on_terminate=None,
                 parent=None, on_parent_gone=None, **kwargs):  # fmt: skip
        super().__init__(write_checkpoint, checkpoint_period=checkpoint_period, **kwargs)
        self._fraction_file = fraction_file
        self._checkpoint_file = checkpoint_file
        self._on_terminate = on_terminate
        self._parent, self._on_parent_gone = parent, on_parent_gone
        if checkpoint_file:
            try:
                with open(checkpoint_file, "x", encoding="ascii") as handle:
                    handle.write("mlds checkpoint: none yet\n")
            except FileExistsError:
                pass

    def install_signal_handlers(self):
        """SIGTERM is the wrapper's kill (quit, abort; its SIGKILL follows 10 s later): exit at once,
        the last checkpoint stands (the standalone control would finish the epoch first)."""
        super().install_signal_handlers()
        if self._on_terminate is not None:
            signal.signal(signal.SIGTERM, lambda signum, frame: self._on_terminate())

    def resumed(self, state, fraction):
        """The wrapper shows the fraction file's number; without this a restarted task would show
        0 until its first epoch ends."""
        if self._fraction_file:
            write_fraction_done(self._fraction_file, fraction)

    def report_progress(self, state, fraction):
        super().report_progress(state, fraction)
        if self._fraction_file:
            write_fraction_done(self._fraction_file, fraction)

    def checkpoint(self, state):
        # the parent watch polls once a second; an orphan must not write in that second either
        if self._on_parent_gone is not None and os.getppid() != self._parent:
            self._on_parent_gone(self._parent)
        super().checkpoint(state)
        epochs = max(n.epochs for n in state.networks)
        log(f"checkpoint: epoch {epochs}", self._stream)  # as in BOINC mode: the project reads stderr
        if self._checkpoint_file:
            mark_checkpoint(self._checkpoint_file, epochs)
