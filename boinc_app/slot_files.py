"""The files an app writes into its BOINC slot to talk to the client outside shared memory.

(``shared/reference/boinc-protocol.md`` §1.5; ``api/boinc_api.cpp`` and ``client/app_control.cpp``.)

``boinc_lockfile``
    Locked (POSIX ``fcntl`` record lock, as the C API's ``FILE_LOCK``) for the app's lifetime, so
    two instances never run in one slot. If the lock is held, the API waits 35 s for the previous
    occupant to go, then asks to be restarted in 10 minutes (temporary exit). The OS drops the
    lock when the process exits, however it exits.
``boinc_finish_called``
    Written just before exiting after the task is over: line 1 is the exit status. The client
    counts exit 0 *with* this file as success; exit 0 without it is a "premature exit" and the
    task is started again.
``boinc_temporary_exit``
    "Try again later": line 1 the delay in seconds (0..86400, else the client uses 300), line 2
    the reason (required: without it the client ignores the file), optional line 3 ``notice``
    (shown to the user as an alert). The app then exits 0; the client deletes the file before the
    next start.
"""

import os
import sys
import time

from boinc_app.boinc_errors import TemporaryExit

LOCKFILE = "boinc_lockfile"
FINISH_FILE = "boinc_finish_called"
TEMPORARY_EXIT_FILE = "boinc_temporary_exit"
LOCK_WAIT_SECONDS = 35.0  # LOCKFILE_TIMEOUT_PERIOD
LOCK_RETRY_DELAY = 600  # seconds: the API's temporary exit when the slot stays locked
LOCK_HELD_REASON = "Waiting to acquire slot directory lock.  Another instance may be running."


def take_slot_lock(slot=".", wait=LOCK_WAIT_SECONDS, poll=0.5):
    """Lock the slot's ``boinc_lockfile``; returns the open descriptor (keep it open).

    Raises ``TemporaryExit`` if another process still holds it after ``wait`` seconds.
    """
    fd = os.open(os.path.join(slot, LOCKFILE), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            os.close(fd)
            raise TemporaryExit(LOCK_RETRY_DELAY, LOCK_HELD_REASON)
        time.sleep(poll)
    return fd


def _try_lock(fd):
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def write_finish_file(status=0, message=None, slot="."):
    """``boinc_finish_called``: the status, then optionally a message for the user."""
    text = f"{int(status)}\n" + (f"{message}\n\n" if message else "")
    _write_synced(os.path.join(slot, FINISH_FILE), text)


def write_temporary_exit(delay, reason, notice=False, slot="."):
    """``boinc_temporary_exit``: delay (clamped to the client's 0..86400), reason, ``notice``."""
    delay = min(max(int(delay), 0), 86400)
    reason = " ".join(str(reason).split()) or "temporary exit"  # one line, never empty
    _write_synced(os.path.join(slot, TEMPORARY_EXIT_FILE), f"{delay}\n{reason}\n" + ("notice\n" if notice else ""))


def _write_synced(path, text):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
