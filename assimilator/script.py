"""``mlds assimilate``: the script BOINC's ``script_assimilator`` runs for each finished workunit.

Calling convention (sched/script_assimilator.cpp): with ``--script "mlds_assimilate wu_id files"``
the daemon runs ``../bin/mlds_assimilate WU_ID PATH...`` for a workunit with a canonical (valid)
result, and ``../bin/mlds_assimilate --error MASK WU_NAME WU_ID BATCH_ID`` for a workunit that
failed. Explicit paths work too: ``mlds assimilate --store DIR RESULT...`` (optionally ``--spec``).
A leading all-digit argument followed by at least one more argument is taken as the workunit id.

The spec is the one embedded in the result file, whose ``spec_sha256`` the validator has already
compared with the server's spec; ``--spec`` makes the assimilator check it again. Only finished
networks (converged or capped) are stored; networks still training need a follow-up workunit, which
is the work generator's business, not this command's.

Exit codes, chosen for script_assimilator, where **any non-zero exit stops the assimilator daemon**
and leaves the workunit unassimilated until an admin restarts it:

* 0: stored, or already stored (ingesting is idempotent), or a failed workunit logged;
* 1: not stored: the result or the store cannot be used; the reason is on stderr. Stopping the
  daemon is deliberate: exiting 0 would mark the workunit assimilated and lose its networks.
"""

from dataclasses import dataclass

from assimilator.store import DatasetStore, StoreError
from boinc_app.result_file import ResultFileError, read_result
from boinc_app.training import TRAINING
from boinc_app.workunit_spec import SpecError, read_spec

EXIT_OK, EXIT_NOT_STORED = 0, 1


class AssimilateError(Exception):
    """The result could not be stored; the message says why."""


@dataclass(frozen=True)
class Ingested:
    workunit: str
    new: int
    finished: int
    training: int

    def describe(self):
        already = self.finished - self.new
        return f"{self.workunit}: stored {self.new} new network(s), {already} already stored, {self.training} still training"


def split_arguments(arguments):
    """``(wu_id or None, paths)`` from script_assimilator's ``wu_id files`` tokens or plain paths."""
    arguments = list(arguments)
    if len(arguments) >= 2 and arguments[0].isdigit():
        return int(arguments[0]), arguments[1:]
    return None, arguments


def ingest_file(store_root, path, spec_path=None):
    """Store the finished networks of the result at ``path``; returns ``Ingested``; raises ``AssimilateError``."""
    try:
        spec = read_spec(spec_path) if spec_path else None
        spec, state, attrs = read_result(path, spec=spec)
        if attrs.get("complete") is not True:
            raise AssimilateError(f"{path} is a checkpoint, not a completed result")
        new = DatasetStore(store_root, spec.dataset).ingest(spec, state, attrs)
    except (SpecError, ResultFileError, StoreError, OSError) as exc:
        raise AssimilateError(f"{path}: {exc}") from None
    training = sum(1 for network in state.networks if network.status == TRAINING)
    return Ingested(spec.name, new, len(state.networks) - training, training)


def failed_workunit_message(error_mask, wu_name, wu_id, batch):
    return f"workunit {wu_name} (#{wu_id}, batch {batch}) failed with error mask {error_mask}; nothing to store"
