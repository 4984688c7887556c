"""BOINC's daemon conventions, for mlds programs that ``bin/start`` runs from ``config.xml``.

An administrator expects every daemon of a project to behave alike (sched/sched_util_basic.cpp,
lib/msg_log.cpp): ``-d N`` sets the log level (1 critical, 2 warning, 3 normal, 4 debug),
``--one_pass`` does one pass and exits, ``--dry_run`` changes nothing, ``--mod N I`` handles only
the share ``I`` of ``N`` so that several instances can split the work, ``--sleep_interval S`` is
the pause between passes that found nothing to do. A daemon exits on SIGHUP (what ``bin/stop``
sends) and when ``PROJECT/stop_daemons`` exists. Log lines go to stdout, which ``bin/start``
appends to ``log_<host>/<program>.log``, as ``<UTC timestamp> [LEVEL] message``.
"""

import os
import signal
import sys
import threading
import time
import zlib
from dataclasses import dataclass

CRITICAL, WARNING, NORMAL, DEBUG = 1, 2, 3, 4
LEVEL_NAMES = {CRITICAL: "CRITICAL", WARNING: "WARNING", NORMAL: "NORMAL", DEBUG: "DEBUG"}


@dataclass(frozen=True)
class DaemonOptions:
    debug_level: int = NORMAL
    one_pass: bool = False
    dry_run: bool = False
    mod: tuple = None  # (N, I): handle only items whose share is I of N
    sleep_interval: float = 5.0

    def __post_init__(self):
        if self.mod is not None:
            n, i = self.mod
            if n < 1 or not 0 <= i < n:
                raise ValueError(f"--mod {n} {i}: need N >= 1 and 0 <= I < N")
        if self.sleep_interval <= 0:
            raise ValueError(f"--sleep_interval {self.sleep_interval}: must be > 0")

    def handles(self, key):
        """Whether this instance's ``--mod`` share includes ``key`` (a stable hash, not ``hash()``)."""
        if self.mod is None:
            return True
        n, i = self.mod
        return zlib.crc32(key.encode("utf-8")) % n == i


def timestamp(now=None):
    """BOINC's ``precision_time_to_string`` in UTC: ``2026-12-01 10:00:00.1234 UTC``."""
    now = time.time() if now is None else now
    seconds = int(now)
    fraction = min(int((now - seconds) * 10000), 9999)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{fraction:04d} UTC"


class DaemonLog:
    """BOINC-style log lines at or below the chosen level."""

    def __init__(self, level=NORMAL, stream=None):
        self.level = level
        self.stream = stream or sys.stdout

    def write(self, kind, message):
        if kind > self.level:
            return
        for line in str(message).splitlines() or [""]:
            self.stream.write(f"{timestamp()} [{LEVEL_NAMES[kind]}] {line}\n")
        self.stream.flush()

    def critical(self, message):
        self.write(CRITICAL, message)

    def warning(self, message):
        self.write(WARNING, message)

    def normal(self, message):
        self.write(NORMAL, message)

    def debug(self, message):
        self.write(DEBUG, message)


class StopSignal:
    """SIGHUP or ``stop_daemons``: either ends the daemon between steps; ``sleep`` wakes at once."""

    def __init__(self, stop_file):
        self.stop_file = stop_file
        self._event = threading.Event()

    def install(self):
        signal.signal(signal.SIGHUP, lambda signum, frame: self._event.set())
        return self

    def requested(self):
        return self._event.is_set() or os.path.exists(self.stop_file)

    def sleep(self, seconds):
        """Wait ``seconds`` or until SIGHUP; returns whether a stop was requested."""
        self._event.wait(seconds)
        return self.requested()
