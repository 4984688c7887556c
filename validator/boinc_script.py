"""The script behind BOINC's ``script_validator`` in a real project.

``script_validator --app mlds_trainer --init_script "mlds_validate files result_id runtime"`` runs
``../bin/mlds_validate UPLOAD_PATH RESULT_ID RUNTIME`` once per returned result (cwd
``PROJECT/tmp_<host>``). BOINC's exit-code contract: 0 valid, 3 transient (BOINC asks again later),
anything else invalid. The spec is found from the upload's own name (``<workunit>_<n>_r<random>_<i>``;
mlds workunit names hold no ``_``) in ``PROJECT/mlds/specs/``, where the work generator wrote it
before creating the workunit, so the script works with the documented tokens, with the script
name alone (BOINC then passes just ``files``), and needs neither the database nor BOINC's
download hierarchy, whose inputs ``file_deleter`` may already have removed.

A call with no arguments is BOINC's token bug (``split()`` keeps the delimiter since commit
55e16adf3a and every token is dropped): the script says so and answers *transient*, so that no
result is judged before the admin fixes the daemon line. A missing spec is also transient (the
server's state is at fault, not the volunteer). Everything else is ``validator.checks``' verdict.
"""

import math
import os
import sys
from dataclasses import dataclass

from validator.checks import EXIT_CODES, INVALID, TRANSIENT, VALID, Outcome, validate_files

TOKEN_BUG = (
    "script_validator passed no arguments: BOINC's split() bug (commit 55e16adf3a) drops every token of "
    '--init_script "mlds_validate files result_id runtime"; use --init_script "mlds_validate" (BOINC then '
    "passes the files) or apply shared/third_party/boinc/patches/0001. Answering transient so no result is judged"
)
# No honest CPU core does more useful trainer FLOPs per second than this (docs/speed.md measures
# 17-52 GFLOP/s per core); a runtime shorter than claimed FLOPs / this is logged, with the result id.
PLAUSIBLE_FLOPS_PER_SECOND = 1e12


@dataclass(frozen=True)
class ValidatorCall:
    paths: tuple
    result_id: int = None
    runtime: float = None


def parse_arguments(arguments):
    """Upload paths first (they hold a ``/``), then the optional ``result_id`` and ``runtime``."""
    paths = tuple(a for a in arguments if "/" in a)
    numbers = [a for a in arguments if "/" not in a]
    result_id = int(numbers[0]) if numbers and numbers[0].isdigit() else None
    runtime = _float(numbers[1]) if len(numbers) > 1 else None
    return ValidatorCall(paths, result_id, runtime)


def _float(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def spec_for_upload(state, path):
    from assimilator.boinc_script import workunit_of_upload

    return state.spec_path(workunit_of_upload(path))


def validate_call(state, call, bound_resources=False):
    """The verdict for one script_validator call (``validator.checks.Outcome``); ``bound_resources``
    only in a process that validates this one result and exits (``validator.limits``)."""
    if not call.paths:
        return Outcome(TRANSIENT, TOKEN_BUG)
    if len(call.paths) != 1:
        return Outcome(INVALID, f"expected one output file, got {len(call.paths)}")
    try:
        spec_path = spec_for_upload(state, call.paths[0])
    except ValueError as exc:
        return Outcome(INVALID, f"not an mlds upload: {exc}")
    if not os.path.isfile(spec_path):
        return Outcome(TRANSIENT, f"no spec {spec_path}: the server's mlds/specs lacks this workunit (was it made by mlds workgen?)")
    from workgen.specs import parse_workunit_name

    previous = state.checkpoint_path(parse_workunit_name(os.path.basename(spec_path)[: -len(".json")]).base)
    resume_path = previous if os.path.isfile(previous) else None  # a follow-up's kept input
    return validate_files(spec_path, call.paths[0], bound_resources=bound_resources, resume_path=resume_path)


def implausible_runtime(spec_path, result_path, runtime):
    """A message when ``runtime`` is too short for the FLOPs the result claims, else None."""
    from boinc_app.flops import trained_flops
    from boinc_app.result_file import read_result
    from boinc_app.workunit_spec import read_spec

    if runtime is None:
        return None
    spec, state, _ = read_result(result_path, spec=read_spec(spec_path))
    flops = trained_flops(spec, state.networks)
    if runtime * PLAUSIBLE_FLOPS_PER_SECOND < flops:
        return f"runtime {runtime:.1f} s is implausible for {flops:.3g} FLOPs of training"
    return None


def host_of_result(project_root, result_id):
    """``host N`` for a result id, from BOINC's database; "" if it cannot be asked (a log detail)."""
    if result_id is None:
        return ""
    try:
        from mlds.server import boinc_db
        from mlds.server.project_config import load_project_config

        connection = boinc_db.connect(load_project_config(project_root).database)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT hostid FROM result WHERE id = %s", (result_id,))
                row = cursor.fetchone()
        finally:
            connection.close()
    except Exception:  # noqa: BLE001 - no database, no host in the log line; the verdict stands
        return ""
    return f" (host {row[0]})" if row else ""


def main(project_root, arguments, log=None, bound_resources=False):
    """Entry point for ``mlds server validate``: logs the verdict, returns BOINC's exit code."""
    from mlds.server.daemon import DaemonLog
    from mlds.server.state import ServerState

    log = log or DaemonLog(stream=sys.stderr)
    state = ServerState(project_root)
    call = parse_arguments(arguments)
    outcome = validate_call(state, call, bound_resources)
    who = f"result {call.result_id}" if call.result_id is not None else (os.path.basename(call.paths[0]) if call.paths else "?")
    if outcome.verdict == VALID:
        try:
            warning = implausible_runtime(spec_for_upload(state, call.paths[0]), call.paths[0], call.runtime)
        except Exception as exc:  # noqa: BLE001 - a log line must not change a verdict
            warning = f"runtime not checked: {type(exc).__name__}: {exc}"
        log.normal(f"mlds_validate {who}: valid: {outcome.summary}")
        if warning:
            log.warning(f"mlds_validate {who}{host_of_result(project_root, call.result_id)}: {warning}")
    else:
        (log.critical if outcome.verdict == TRANSIENT else log.normal)(f"mlds_validate {who}: {outcome.verdict}: {outcome.reason}")
    return EXIT_CODES[outcome.verdict]
