"""The script behind BOINC's ``script_assimilator`` in a real project: store, follow up, never stop.

``script_assimilator --app mlds_trainer --script "mlds_assimilate wu_id files"`` (or the script
name alone: BOINC's default tokens are ``wu_id files``) runs ``../bin/mlds_assimilate WU_ID PATH``
for a workunit with a canonical (valid) result, and ``../bin/mlds_assimilate --error MASK WU_NAME
WU_ID BATCH`` for one that failed. **Any non-zero exit stops BOINC's assimilator daemon for good**,
so this script exits 0 for everything it can act on:

- a valid result: its finished networks go into the dataset store (idempotent); if networks are
  still training, the result is copied to ``mlds/checkpoints/`` (``file_deleter`` removes the
  upload once the workunit is assimilated, and it is their only checkpoint) and a follow-up is
  recorded for the work generator (``mlds/followups/``, its spec in ``mlds/specs/``); the input
  checkpoint this workunit continued from is no longer needed and is removed;
- a result that cannot be stored (unreadable, not matching the store): copied to
  ``mlds/quarantine/<workunit>/`` with ``reason.txt``, and recorded as failed so that the work
  generator re-issues its networks;
- a failed workunit: recorded in ``mlds/failed/`` for a re-issue.

The one exception is a call with no arguments at all: that is BOINC's token bug (since BOINC commit
55e16adf3a, ``split()`` keeps the delimiter and every token is dropped), the workunit cannot be
known, and exiting 0 would lose it; the script exits 1 with a message naming the bug and the fix.
Kill -9 at any step is safe: BOINC calls the script again for a workunit it has not marked
assimilated, and every step is an atomic write of the same bytes.
"""

import os
import shutil
import sys
from dataclasses import dataclass

from assimilator.store import DatasetStore, StoreError
from boinc_app.atomic_file import replace_atomically, write_atomically
from boinc_app.result_file import ResultFileError, read_result
from boinc_app.workunit_spec import SpecError, read_spec, write_spec
from mlds.server.state import ServerState, remove_if_present, write_record
from workgen.plan import follow_up
from workgen.specs import parse_workunit_name

EXIT_HANDLED, EXIT_MISCONFIGURED = 0, 1
TOKEN_BUG = (
    "script_assimilator passed no arguments: BOINC's split() bug (commit 55e16adf3a) drops every token of "
    '--script "mlds_assimilate wu_id files". Use --script "mlds_assimilate" (the defaults are wu_id files) '
    "or apply shared/third_party/boinc/patches/0001; the daemon stops so that no workunit is lost"
)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    message: str
    critical: bool = False


def workunit_of_upload(path):
    """BOINC names an upload ``<workunit>_<n>_r<random>_<i>``; mlds names hold no ``_``."""
    name = os.path.basename(path).split("_", 1)[0]
    parse_workunit_name(name)
    return name


def assimilate(state, arguments, error_mask=None):
    """Handle one script_assimilator call; returns an ``Outcome`` (never raises for bad input)."""
    arguments = list(arguments)
    if error_mask is not None:
        name = arguments[0] if arguments else "?"
        record_failure(state, name, f"BOINC gave up on the workunit (error mask {error_mask})")
        return Outcome(EXIT_HANDLED, f"{name}: failed with error mask {error_mask}; recorded for a re-issue")
    if not arguments:
        return Outcome(EXIT_MISCONFIGURED, TOKEN_BUG, critical=True)
    paths = arguments[1:] if len(arguments) >= 2 and arguments[0].isdigit() else arguments
    try:
        name = workunit_of_upload(paths[0])
    except ValueError as exc:
        set_aside(state, os.path.basename(paths[0]), paths[0], f"not an mlds upload: {exc}")
        return Outcome(EXIT_HANDLED, f"{paths[0]}: set aside, not an mlds workunit's upload", critical=True)
    try:
        return Outcome(EXIT_HANDLED, store_result(state, name, paths[0]))
    except (SpecError, ResultFileError, StoreError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a bug must not stop BOINC's daemon or lose the result
        reason = f"internal error {type(exc).__name__}: {exc}"
    set_aside(state, name, paths[0], reason)
    record_failure(state, name, f"its result could not be stored: {reason}")
    return Outcome(EXIT_HANDLED, f"{name}: set aside in {state.quarantine_dir} and recorded for a re-issue: {reason}", critical=True)


def store_result(state, name, path):
    spec = read_spec(state.spec_path(name))
    spec, result, attrs = read_result(path, spec=spec)
    if attrs.get("complete") is not True:
        raise ResultFileError("the file is a checkpoint, not a completed result")
    new = DatasetStore(state.store_dir, spec.dataset).ingest(spec, result, attrs)
    message = f"{name}: stored {new} new network(s)"
    follow = follow_up(spec, result)
    if follow is not None:
        keep_checkpoint(state, follow.name, path)
        if not os.path.exists(state.spec_path(follow.name)):
            write_spec(follow, state.spec_path(follow.name))
        write_record(state.followup_path(follow.name), {"workunit": follow.name, "after": name})
        message += f"; follow-up {follow.name} recorded"
    if spec.resume_from:
        remove_if_present(state.checkpoint_path(parse_workunit_name(name).base))
    return message


def keep_checkpoint(state, follow_name, path):
    target = state.checkpoint_path(parse_workunit_name(follow_name).base)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with replace_atomically(target) as temporary:
        shutil.copyfile(path, temporary)


def record_failure(state, name, reason):
    try:
        parse_workunit_name(name)
    except ValueError:
        return
    write_record(state.failed_path(name), {"workunit": name, "reason": reason})


def set_aside(state, name, path, reason):
    folder = os.path.join(state.quarantine_dir, name)
    os.makedirs(folder, exist_ok=True)
    if os.path.isfile(path):
        with replace_atomically(os.path.join(folder, os.path.basename(path))) as temporary:
            shutil.copyfile(path, temporary)
    write_atomically(os.path.join(folder, "reason.txt"), (reason + "\n").encode())


def main(project_root, arguments, error_mask=None, log=None):
    """Entry point for ``mlds server assimilate``: logs the outcome, returns the exit code."""
    from mlds.server.daemon import DaemonLog

    log = log or DaemonLog(stream=sys.stderr)
    outcome = assimilate(ServerState(project_root), arguments, error_mask)
    (log.critical if outcome.critical else log.normal)(f"mlds_assimilate: {outcome.message}")
    return outcome.exit_code
