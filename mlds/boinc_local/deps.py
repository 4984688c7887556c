"""Which Debian package provides each program or header the local BOINC server needs.

A developer who lacks a part should read one line saying what to ``apt-get install``, not a
configure log or a ``FileNotFoundError``; the fixtures turn ``MissingDependencyError`` into a skip
with that line as the reason (and under ``CI=true`` a skip fails the run).
"""

import glob
import os
import shutil

from mlds.boinc_local.errors import MissingDependencyError

INCLUDE_DIRS = ("/usr/include", "/usr/local/include", *glob.glob("/usr/include/*-linux-gnu*"))


def require_programs(programs):
    """``programs``: ``{program: debian package}``; returns ``{program: absolute path}``."""
    found = {name: shutil.which(name) or _sbin(name) for name in programs}
    missing = {name: package for name, package in programs.items() if not found[name]}
    if missing:
        raise MissingDependencyError(f"program(s) {', '.join(missing)}", sorted(set(missing.values())))
    return found


def require_headers(headers):
    """``headers``: ``{relative header path: debian package}``."""
    missing = {
        header: package
        for header, package in headers.items()
        if not any(os.path.exists(os.path.join(d, header)) for d in INCLUDE_DIRS)
    }
    if missing:
        raise MissingDependencyError(f"header(s) {', '.join(missing)}", sorted(set(missing.values())))


def _sbin(name):
    """``shutil.which`` misses /usr/sbin for a user whose PATH lacks it (mariadbd, apache2 live there)."""
    for directory in ("/usr/sbin", "/sbin"):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None
