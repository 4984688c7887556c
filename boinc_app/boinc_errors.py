"""The errors of the trainer's BOINC mode, as one small hierarchy.

``boinc_app.main`` maps each to an exit code in one place: a ``TemporaryExit`` becomes BOINC's
temporary exit (the ``boinc_temporary_exit`` file, then exit 0: the client starts the task again
after the delay); any other ``BoincAppError`` is a permanent error of this task (its message goes
to stderr, which the client uploads with the result).
"""


class BoincAppError(Exception):
    """Something about the BOINC slot makes this task unable to run; the message says what."""


class InitDataError(BoincAppError):
    """``init_data.xml`` is unreadable, malformed, hostile or has a field of the wrong kind."""


class SharedMemoryError(BoincAppError):
    """The client's shared memory (``boinc_mmap_file`` or the Windows mapping) cannot be used."""


class TemporaryExit(BoincAppError):
    """Retry this task later: ``delay`` seconds, ``reason`` shown by the client (e.g. GPU missing)."""

    def __init__(self, delay, reason):
        super().__init__(reason)
        self.delay = int(delay)
        self.reason = reason
