"""Waiting for a service by polling a condition against a deadline.

Sleeping a fixed time and hoping a service is up is a race that a slow CI machine loses and a fast one
pays for in idle seconds; every wait in this package polls the real thing (a TCP connect, an HTTP
answer, a database row, a pid gone) and gives up at a deadline with a message saying what it waited
for and where to look.
"""

import socket
import time

from mlds.boinc_local.errors import ServiceError


def wait_until(condition, timeout, what, interval=0.2, log=None):
    """Call ``condition()`` until it returns a true value (returned), at most ``timeout`` seconds.

    ``condition`` may raise ``ServiceError`` to give up early (a process that exited will never
    answer). On timeout raises ``ServiceError`` naming ``what`` and ``log``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ServiceError(f"timed out after {timeout:g} s waiting for {what}", log)
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def tail(path, lines=40):
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"
