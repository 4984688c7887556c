"""The errors of ``mlds.boinc_local``: one base class, so a caller (a pytest fixture, a CLI) can tell
"this machine lacks a part" (skip, or tell the user what to install) from "the part is there but
broke" (fail, and read the log the error names).

Every message says what went wrong and what to do about it; a failure of a service names the log file
where its own account of the failure is.
"""


class BoincLocalError(Exception):
    """Something about the local BOINC server, its database, web server or client went wrong."""


class MissingDependencyError(BoincLocalError):
    """A program, header or file this machine needs is absent. ``packages``: Debian packages to install."""

    def __init__(self, what, packages=()):
        self.what = what
        self.packages = tuple(packages)
        fix = f": apt-get install {' '.join(self.packages)}" if self.packages else ""
        super().__init__(f"missing {what}{fix}")


class BuildError(BoincLocalError):
    """Building BOINC's server failed; ``log`` is the build log to read."""

    def __init__(self, message, log):
        self.log = log
        super().__init__(f"{message} (build log: {log})")


class ServiceError(BoincLocalError):
    """A service (MariaDB, Apache, a BOINC daemon, the client) did not start, answer or stop."""

    def __init__(self, message, log=None):
        self.log = log
        super().__init__(f"{message} (log: {log})" if log else message)


class CommandError(BoincLocalError):
    """A command (a project ``bin/`` tool, ``make_project``, ``boinccmd``) exited non-zero."""

    def __init__(self, command, returncode, output):
        self.command, self.returncode, self.output = command, returncode, output
        super().__init__(f"{' '.join(map(str, command))} exited {returncode}:\n{output[-4000:]}")
