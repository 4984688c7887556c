"""``create_work``'s command line and ``--stdin`` line syntax, and creating the jobs they describe.

The work generator talks to a real BOINC server by running ``bin/create_work`` (tools/create_work.cpp),
so the test server takes exactly the same arguments and the same batch format:

* options are ``-name`` or ``--name``; anything else starting with ``-`` is an error; every other
  argument is an input file's physical name (already staged in the download hierarchy, or at the top
  of ``download/``, from where it is copied into the hierarchy as create_work does);
* ``--stdin`` reads one job per line. A line may carry ``--command_line X`` (appended to the
  command line's), ``--wu_name``, ``--wu_template``, ``--result_template``, ``--remote_file URL
  NBYTES MD5``, ``--priority`` and file names. Lines are split like BOINC's ``parse_command_line``:
  whitespace separates, ``'...'`` or ``"..."`` quote, and there are no escapes. A job without a
  name is called ``<wu_name>_<line number>``, the default ``wu_name`` being ``<app>_<pid>_<time>``.
  Blank lines are skipped;
* templates default to ``templates/<app>_in`` and ``templates/<app>_out``; relative template paths
  are relative to the project directory (create_work runs there). As in create_work, values in the
  input template's ``<workunit>`` override the command line's.

What the test server does not do is refused with a message rather than ignored: job assignment and
broadcast, gzip and template-given remote files, and quorums (``min_quorum``, ``target_nresults``
and ``max_success_results`` must be 1: each result is validated alone by the init script).
"""

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field

from mlds.test_server import db, templates
from mlds.test_server.errors import CreateWorkError

FLOAT_OPTIONS = ("rsc_fpops_est", "rsc_fpops_bound", "rsc_memory_bound", "rsc_disk_bound")
INT_OPTIONS = (
    "delay_bound", "min_quorum", "target_nresults", "max_error_results", "max_total_results",
    "max_success_results", "priority", "batch", "d",
)  # fmt: skip
TEXT_OPTIONS = ("appname", "wu_name", "wu_template", "result_template", "command_line", "config_dir")
FLAGS = ("stdin", "verbose", "continue_on_error")
UNSUPPORTED = (
    "target_host", "target_user", "target_team", "broadcast", "broadcast_user", "broadcast_team",
    "wu_id", "credit", "app_version_num", "size_class", "hr_class", "keywords", "sub_appname",
)  # fmt: skip
STDIN_OPTIONS = ("command_line", "wu_name", "wu_template", "result_template", "priority")
WU_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}$")
MAX_STDIN_LINE = 4096  # CMD_SIZE


@dataclass(frozen=True)
class RemoteFile:
    url: str
    nbytes: int
    md5: str


@dataclass(frozen=True)
class JobDescription:
    """One job: create_work's ``JOB_DESC``, with BOINC's defaults."""

    appname: str = ""
    wu_name: str = ""
    wu_template: str = ""
    result_template: str = ""
    command_line: str = ""
    infiles: tuple = ()  # physical names (str) and RemoteFile
    rsc_fpops_est: float = 3600e9
    rsc_fpops_bound: float = 86400e9
    rsc_memory_bound: float = 5e8
    rsc_disk_bound: float = 1e9
    delay_bound: int = 7 * 86400
    min_quorum: int = 1
    target_nresults: int = 1
    max_error_results: int = 1
    max_total_results: int = 1
    max_success_results: int = 1
    priority: int = 0
    batch: int = 0
    options: dict = field(default_factory=dict, compare=False)  # -d, --verbose, ...: accepted, not used


def split_command_line(line):
    """BOINC's ``parse_command_line``: whitespace-separated, '...' or "..." quoted, no escapes."""
    tokens, current, quote = [], None, None
    for character in line:
        if quote:
            if character == quote:
                tokens.append(current)
                current, quote = None, None
            else:
                current += character
        elif current is None:
            if character in "'\"":
                current, quote = "", character
            elif not character.isspace():
                current = character
        elif character.isspace():
            tokens.append(current)
            current = None
        else:
            current += character
    if current is not None:
        tokens.append(current)
    return tokens


def _option_name(argument):
    if argument.startswith("--"):
        return argument[2:]
    if argument.startswith("-") and len(argument) > 1:
        return argument[1:]
    return None


def _take(arguments, index, count, name):
    values = arguments[index + 1 : index + 1 + count]
    if len(values) != count:
        raise CreateWorkError(f"--{name} needs {count} value{'s' if count > 1 else ''}")
    return values


def _number(kind, value, name):
    try:
        return kind(value)
    except ValueError:
        raise CreateWorkError(f"--{name}: {value!r} is not a number") from None


def _remote_file(values):
    url, nbytes, md5 = values
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise CreateWorkError(f"--remote_file: {md5!r} is not an md5 checksum")
    return RemoteFile(url, int(_number(float, nbytes, "remote_file")), md5)


def parse_arguments(arguments):
    """``(JobDescription, use_stdin)`` from create_work's command-line arguments."""
    values, infiles, use_stdin, index = {}, [], False, 0
    while index < len(arguments):
        argument = arguments[index]
        name = _option_name(argument)
        if name is None:
            infiles.append(argument)
        elif name in FLAGS:
            use_stdin = use_stdin or name == "stdin"
        elif name == "remote_file":
            infiles.append(_remote_file(_take(arguments, index, 3, name)))
            index += 3
        elif name in FLOAT_OPTIONS + INT_OPTIONS + TEXT_OPTIONS:
            (value,) = _take(arguments, index, 1, name)
            values[name] = _typed(name, value)
            index += 1
        elif name in UNSUPPORTED:
            raise CreateWorkError(f"--{name}: a create_work option the test server does not support")
        else:
            raise CreateWorkError(f"bad argument '{argument}'")
        index += 1
    options = {key: values.pop(key) for key in ("d", "config_dir") if key in values}
    if not values.get("appname"):
        raise CreateWorkError("--appname is required")
    return JobDescription(infiles=tuple(infiles), options=options, **values), use_stdin


def _typed(name, value):
    if name in FLOAT_OPTIONS:
        return _number(float, value, name)
    if name in INT_OPTIONS:
        return _number(int, value, name)
    return value


def parse_stdin_line(line, defaults, number):
    """The job of one ``--stdin`` line; ``defaults`` is the command line's job, ``number`` the line's index."""
    if len(line) >= MAX_STDIN_LINE - 1:
        raise CreateWorkError(f"--stdin line {number + 1}: longer than create_work's {MAX_STDIN_LINE}-byte buffer")
    arguments = split_command_line(line)
    changes, infiles, index = {"wu_name": ""}, [], 0
    while index < len(arguments):
        argument, name = arguments[index], _option_name(arguments[index])
        if name is None:
            infiles.append(argument)
        elif name == "remote_file":
            infiles.append(_remote_file(_take(arguments, index, 3, name)))
            index += 3
        elif name in STDIN_OPTIONS:
            (value,) = _take(arguments, index, 1, name)
            changes[name] = _typed(name, value)
            index += 1
        elif name in ("target_host", "target_user"):
            raise CreateWorkError(f"--stdin line {number + 1}: --{name} is not supported by the test server")
        else:
            raise CreateWorkError(f"bad stdin argument '{argument}'")
        index += 1
    if "command_line" in changes and defaults.command_line:
        changes["command_line"] = f"{defaults.command_line} {changes['command_line']}"
    changes["wu_name"] = changes["wu_name"] or f"{defaults.wu_name}_{number}"
    return dataclasses.replace(defaults, infiles=defaults.infiles + tuple(infiles), **changes)


def with_defaults(job):
    """Fill in create_work's default name and template paths."""
    return dataclasses.replace(
        job,
        wu_name=job.wu_name or f"{job.appname}_{os.getpid()}_{time.time():f}",
        wu_template=job.wu_template or os.path.join("templates", f"{job.appname}_in"),
        result_template=job.result_template or os.path.join("templates", f"{job.appname}_out"),
    )


def jobs_from(arguments, stdin_lines=()):
    """Every job that ``create_work ARGUMENTS [< stdin]`` describes."""
    job, use_stdin = parse_arguments(arguments)
    job = with_defaults(job)
    if not use_stdin:
        return [job]
    return [parse_stdin_line(line, job, number) for number, line in enumerate(stdin_lines) if line.strip()]


def create_jobs(config, jobs):
    """Create every job in one transaction (all or nothing); returns the workunit names."""
    connection = config.connect()
    try:
        with db.transaction(connection):
            return [_create(connection, config, job) for job in jobs]
    finally:
        connection.close()


def _create(connection, config, job):
    _check_name(job.wu_name)
    app = connection.execute("SELECT id FROM app WHERE name = ?", (job.appname,)).fetchone()
    if app is None:
        raise CreateWorkError(f"app {job.appname!r} not found; add an app version first")
    if connection.execute("SELECT 1 FROM workunit WHERE name = ?", (job.wu_name,)).fetchone():
        raise CreateWorkError(f"a workunit named {job.wu_name} exists already")
    draft = templates.process_input_template(_read_template(config, job.wu_template), config, job)
    result_template = _read_template(config, job.result_template)
    templates.process_output_template(result_template, f"{job.wu_name}_0")  # refuse a bad template now
    _check_job(draft.job)
    wuid = _insert_workunit(connection, app["id"], draft, result_template)
    for position, wu_file in enumerate(draft.files):
        db.insert(connection, "wu_file", wuid=wuid, position=position, **dataclasses.asdict(wu_file))
    templates.create_result(connection, wuid, f"{job.wu_name}_0", result_template)
    return job.wu_name


def _check_name(name):
    if not WU_NAME.match(name) or ".." in name:
        raise CreateWorkError(f"workunit name {name!r}: use letters, digits and _ . + - only")


def _check_job(job):
    if (job.min_quorum, job.target_nresults, job.max_success_results) != (1, 1, 1):
        raise CreateWorkError("the test server validates each result alone: min_quorum, target_nresults and max_success_results must be 1")
    if job.max_total_results < 1 or job.max_error_results < 1 or job.delay_bound <= 0:
        raise CreateWorkError("max_total_results, max_error_results and delay_bound must be positive")


def _read_template(config, path):
    full = path if os.path.isabs(path) else os.path.join(config.root, path)
    try:
        with open(full, "rb") as handle:
            return handle.read(1 << 20)
    except OSError as exc:
        raise CreateWorkError(f"can't read template {full}: {exc.strerror}") from None


def _insert_workunit(connection, appid, draft, result_template):
    job = draft.job
    return db.insert(
        connection,
        "workunit",
        name=job.wu_name,
        appid=appid,
        command_line=job.command_line,
        extra_xml=draft.extra_xml,
        rsc_fpops_est=job.rsc_fpops_est,
        rsc_fpops_bound=job.rsc_fpops_bound,
        rsc_memory_bound=job.rsc_memory_bound,
        rsc_disk_bound=job.rsc_disk_bound,
        delay_bound=job.delay_bound,
        max_error_results=job.max_error_results,
        max_total_results=job.max_total_results,
        priority=job.priority,
        batch=job.batch,
        result_template=result_template.decode("utf-8", errors="replace"),
        create_time=time.time(),
    )
