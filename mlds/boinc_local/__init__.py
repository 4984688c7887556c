"""BOINC's real server, built from source and run on 127.0.0.1, for tests and developers.

mlds plugs into a BOINC project through BOINC's own contracts, so its server-side code is tested
against the real thing: BOINC's C++ server built from a source path (``build``), a private MariaDB
(``mariadb``), a ``make_project`` project served by a private Apache (``project``, ``apache``, with
apps added by BOINC's own tools in ``apps``), and Debian's real ``boinc-client`` attached to it
(``client``). All services run as one unprivileged account (``service_user``), every wait polls
against a deadline (``waiting``), and every failure is a ``BoincLocalError`` that says what to do
(``errors``; a machine that lacks a part raises ``MissingDependencyError`` naming Debian packages).

``tests/boinc_server_fixtures.py`` wraps these as pytest fixtures.
"""

from mlds.boinc_local.errors import BoincLocalError, BuildError, CommandError, MissingDependencyError, ServiceError

__all__ = ["BoincLocalError", "BuildError", "CommandError", "MissingDependencyError", "ServiceError"]
