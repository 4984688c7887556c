"""The one unprivileged account that runs every service of a local BOINC server.

Apache refuses to run as root, and BOINC's own advice is to run the database, web server, daemons
and client as one ordinary user, so that every file the web server writes (uploads, the scheduler's
logs) is one the daemons can read and delete. This module decides who that user is and runs commands
as it:

- A developer who is not root: the services run as that developer, nothing changes hands.
- Root (CI's containers, this project's build machines): the services run as ``MLDS_BOINC_USER`` if
  set, else ``mlds-boinc`` if that account exists (``.ci/run`` creates it with ``useradd``), else
  ``nobody``. Commands are started with ``subprocess``'s ``user=``/``group=`` (setuid in the child),
  so no ``sudo`` is needed.

Whatever the account, its files live in a *runtime directory* it can reach: ``/tmp/mlds-boinc-*``
(or under ``MLDS_BOINC_RUN_DIR``), mode 0755 and owned by the service user. pytest's ``tmp_path`` is
no good for this: root's ``/tmp/pytest-of-root`` is mode 0700, so ``nobody`` could not even reach its
own project directory there.

Services get a clean environment rather than the caller's: ``HOME`` in the runtime directory (the
account may have none), ``USER`` set (``make_project`` reads it), and a ``PATH`` whose first entry
holds a ``python`` that is Debian's ``python3`` (BOINC's tools start with ``#!/usr/bin/env python``
and import ``MySQLdb``, which a virtualenv or pyenv interpreter lacks).
"""

import ctypes
import os
import pwd
import signal
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlds.boinc_local.errors import CommandError, MissingDependencyError

DEFAULT_ROOT_SERVICE_USERS = ("mlds-boinc", "nobody")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_PYTHON = "/usr/bin/python3"
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServiceUser:
    """An account (``uid``, ``gid``) and the runtime directory its services use (``home``, ``bin``)."""

    name: str
    uid: int
    gid: int
    runtime: Path

    @property
    def is_self(self):
        return self.uid == os.geteuid()

    @property
    def home(self):
        return self.runtime / "home"

    @property
    def bin(self):
        """Put first on PATH: holds ``python`` -> Debian's python3."""
        return self.runtime / "bin"

    def environment(self, extra=None, path_prefix=()):
        env = {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": ":".join([*map(str, path_prefix), str(self.bin), SYSTEM_PATH]),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.runtime / "tmp"),
        }
        return {**env, **(extra or {})}

    def _identity(self):
        if self.is_self:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def popen(self, command, env=None, path_prefix=(), **kwargs):
        """``subprocess.Popen`` of a service as this user (``env``, ``path_prefix`` as for ``run``), in
        a session of its own, told SIGTERM if the caller dies.

        A session of its own because Apache's prefork MPM, run in the foreground, stops by sending
        SIGTERM to its whole process group: sharing ours, it would take MariaDB (and, for a
        developer who is not root, pytest itself) down with it."""
        command = [str(part) for part in command]
        return subprocess.Popen(
            command, env=self.environment(env, path_prefix), start_new_session=True, preexec_fn=_terminate_with_parent,
            **self._identity(), **kwargs,
        )  # fmt: skip

    def run(self, command, check=True, env=None, path_prefix=(), timeout=600, **kwargs):
        """Run to completion as this user, output captured as text; ``CommandError`` if it fails.
        ``env``: variables added to ``environment()``; ``path_prefix``: directories put first on PATH."""
        command = [str(part) for part in command]
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        done = subprocess.run(
            command, env=self.environment(env, path_prefix), capture_output=True, text=True, timeout=timeout,
            **self._identity(), **kwargs,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise CommandError(command, done.returncode, done.stdout + done.stderr)
        return done

    def make_dir(self, path, mode=0o755):
        """``mkdir -p``: the directory and every parent it creates owned by this user."""
        path = Path(path)
        missing = [path, *(p for p in path.parents if not p.exists())][::-1]
        for directory in missing:
            directory.mkdir(exist_ok=True)
            self.chown(directory)
        path.chmod(mode)
        self.chown(path)
        return path

    def chown(self, path):
        if not self.is_self:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def chown_tree(self, root):
        """Give a tree written by the caller (e.g. ``make_project`` run as root) to this user."""
        if self.is_self:
            return
        self.chown(root)
        for directory, subdirs, files in os.walk(root):
            for name in subdirs + files:
                self.chown(os.path.join(directory, name))


def _terminate_with_parent():
    """In the child, after the change of user: SIGTERM when the parent dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def service_account(environ=None):
    """``(name, uid, gid)`` of the account services run as (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    candidates = [environ["MLDS_BOINC_USER"]] if environ.get("MLDS_BOINC_USER") else DEFAULT_ROOT_SERVICE_USERS
    for name in candidates:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    raise MissingDependencyError(
        f"an unprivileged account to run BOINC's services as (tried {', '.join(candidates)}): "
        "useradd --system --user-group --shell /usr/sbin/nologin mlds-boinc"
    )


def make_service_user(prefix="mlds-boinc-", environ=None):
    """A ``ServiceUser`` with a fresh runtime directory (see the module docstring)."""
    environ = os.environ if environ is None else environ
    name, uid, gid = service_account(environ)
    parent = environ.get("MLDS_BOINC_RUN_DIR") or tempfile.gettempdir()
    runtime = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    user = ServiceUser(name=name, uid=uid, gid=gid, runtime=runtime)
    user.make_dir(runtime)
    for sub in ("home", "bin", "tmp"):
        user.make_dir(runtime / sub, mode=0o700 if sub == "tmp" else 0o755)
    _link_system_python(user.bin)
    return user


def _link_system_python(bin_dir):
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise MissingDependencyError(f"Debian's {SYSTEM_PYTHON}", ["python3", "python3-mysqldb"])
    (bin_dir / "python").symlink_to(SYSTEM_PYTHON)


def require_system_mysqldb(user):
    """BOINC's Python tools import ``MySQLdb``; check Debian's python3 has it (as the service user)."""
    done = user.run([user.bin / "python", "-c", "import MySQLdb"], check=False)
    if done.returncode != 0:
        raise MissingDependencyError(f"MySQLdb for {SYSTEM_PYTHON}", ["python3-mysqldb"])


def remove_runtime(user):
    """Remove a runtime directory and everything in it (services stopped first)."""
    shutil.rmtree(user.runtime, ignore_errors=True)
