"""``python -m mlds.boinc_local``: a developer's local BOINC server, up until Ctrl-C.

Builds BOINC's server (or takes it from the cache), starts a private MariaDB, makes a project on
127.0.0.1 with its daemons running, prints where everything is and how to run a project tool as
its owner, and on Ctrl-C (or SIGTERM) stops it all again. The files stay for reading afterwards
unless ``--remove`` is given. The same parts the tests use (``tests/boinc_server_fixtures.py``).
"""

import argparse
import shlex
import signal
import sys
import threading

from mlds.boinc_local.build import build_boinc_server
from mlds.boinc_local.errors import BoincLocalError
from mlds.boinc_local.mariadb import start_mariadb
from mlds.boinc_local.project import ProjectOptions, create_project
from mlds.boinc_local.service_user import make_service_user, remove_runtime


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m mlds.boinc_local", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="mldslocal", help="project short name (letters, digits, _)")
    parser.add_argument("--port", type=int, default=0, help="Apache's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--remove", action="store_true", help="remove the runtime directory on exit")
    return parser.parse_args(argv)


def tool_command(project, tool="bin/status"):
    """The shell line that runs a project tool as its owner, as ``LocalProject.run_bin`` does."""
    env = ["env", *(f"{key}={value}" for key, value in project.environment().items())]
    prefix = [] if project.service_user.is_self else ["runuser", "-u", project.service_user.name, "--"]
    return f"cd {shlex.quote(str(project.root))} && {shlex.join(prefix + env + [tool])}"


def describe(project, database):
    return "\n".join([
        f"master URL   {project.url}",
        f"project root {project.root} (owner {project.service_user.name})",
        f"daemon logs  {project.log_dir}",
        f"database     {database.user}:{database.password}@{database.db_host}/{project.db_name}",
        f"a tool       {tool_command(project)}",
        "Ctrl-C stops it.",
    ])  # fmt: skip


def main(argv=None):
    arguments = parse_arguments(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        tree = build_boinc_server()
        user = make_service_user()
    except BoincLocalError as error:
        sys.exit(f"error: {error}")
    database = project = None
    try:
        database = start_mariadb(user.runtime / "mariadb", user)
        options = ProjectOptions(name=arguments.name, http_port=arguments.port)
        project = create_project(tree, database.params.with_database(arguments.name), user, options)
        project.start_daemons()
        print(describe(project, database.params), flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    except BoincLocalError as error:
        print(f"error: {error}", file=sys.stderr)
    finally:
        if project:
            project.close()
        if database:
            database.stop()
        if arguments.remove:
            remove_runtime(user)
        else:
            print(f"files kept in {user.runtime}")


if __name__ == "__main__":
    main()
