"""Running BOINC's own tools from the project's ``bin/``: ``stage_file_native`` and ``create_work``.

Workunits enter BOINC only through these two programs, exactly as an administrator would run them
(cwd = the project root, which both require). ``create_work --stdin`` inserts all the lines it is
given in one SQL statement, so a batch is created entirely or not at all; its per-line options are
only ``--wu_name``, ``--wu_template``, ``--result_template``, ``--command_line``, ``--priority`` and
the target/remote-file options, so the ``rsc_*`` values are given once per call, and jobs with
different values go to different calls.
"""

import os
import shlex
import subprocess


class BoincToolError(RuntimeError):
    """A BOINC tool failed; the message holds its command and output."""


def _run(project_root, argv, stdin_text=None, timeout=600):
    try:
        completed = subprocess.run(
            argv, cwd=project_root, input=stdin_text, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BoincToolError(f"{shlex.join(argv)}: {exc}") from None
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()
        raise BoincToolError(f"{shlex.join(argv)} exited {completed.returncode}: {output[-2000:]}")
    return completed.stdout + completed.stderr


def stage_files(project_root, paths):
    """``bin/stage_file_native --copy`` each path (idempotent for files already staged)."""
    tool = os.path.join(project_root, "bin", "stage_file_native")
    for path in paths:
        _run(project_root, [tool, "--copy", path])


def create_work(project_root, app, lines, bounds, result_template):
    """One ``bin/create_work --appname APP ... --stdin`` call for ``lines`` (one job each)."""
    argv = [os.path.join(project_root, "bin", "create_work"), "--appname", app, "--result_template", result_template]
    for option, value in sorted(bounds.items()):
        argv += [f"--{option}", repr(float(value))]
    argv.append("--stdin")
    return _run(project_root, argv, stdin_text="".join(line + "\n" for line in lines))


def job_line(name, wu_template, physical_names):
    return shlex.join(["--wu_name", name, "--wu_template", wu_template, *physical_names])
