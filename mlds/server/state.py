"""What mlds keeps inside a BOINC project, under ``PROJECT/mlds/``: one module owns the layout.

BOINC's own tables say which workunits exist and what happened to their results, but BOINC deletes
what mlds cannot lose: ``file_deleter`` removes a workunit's inputs and its uploads once it is
assimilated, and the upload of an unconverged network is the only copy of its checkpoint. So the
server keeps, beside BOINC's directories::

    PROJECT/mlds/specs/<workunit>.json     every workunit's spec, written before create_work (the
                                           validator's and assimilator's lookup; small, kept)
    PROJECT/mlds/checkpoints/<base>.h5     the validated result a follow-up continues from, kept
                                           until that follow-up is assimilated (``<base>``: the
                                           follow-up's name without its re-issue suffix)
    PROJECT/mlds/followups/<workunit>.json follow-ups the assimilator asked for and the work
                                           generator has not yet seen in BOINC's database
    PROJECT/mlds/failed/<workunit>.json    workunits BOINC gave up on (or whose result could not be
                                           stored), for the work generator to re-issue
    PROJECT/mlds/quarantine/<workunit>/    results set aside with ``reason.txt``
    PROJECT/mlds/staging/                  input files on their way into the download hierarchy
    PROJECT/mlds/store/, releases/, status.html   the dataset store and what is published from it

Every file here is written atomically (``boinc_app.atomic_file``) and every record is keyed by a
deterministic workunit name, so a process killed at any moment leaves either the old or the new
record, and doing a step twice writes the same bytes.
"""

import json
import os
from dataclasses import dataclass

from boinc_app.atomic_file import write_atomically

STATE_DIR = "mlds"


@dataclass(frozen=True)
class ServerState:
    project_root: str

    @property
    def root(self):
        return os.path.join(self.project_root, STATE_DIR)

    def _dir(self, name):
        return os.path.join(self.root, name)

    @property
    def specs_dir(self):
        return self._dir("specs")

    @property
    def checkpoints_dir(self):
        return self._dir("checkpoints")

    @property
    def followups_dir(self):
        return self._dir("followups")

    @property
    def failed_dir(self):
        return self._dir("failed")

    @property
    def quarantine_dir(self):
        return self._dir("quarantine")

    @property
    def staging_dir(self):
        return self._dir("staging")

    @property
    def store_dir(self):
        return self._dir("store")

    @property
    def releases_dir(self):
        return self._dir("releases")

    @property
    def status_page(self):
        return self._dir("status.html")

    def spec_path(self, workunit):
        return os.path.join(self.specs_dir, f"{workunit}.json")

    def checkpoint_path(self, base):
        return os.path.join(self.checkpoints_dir, f"{base}.h5")

    def followup_path(self, workunit):
        return os.path.join(self.followups_dir, f"{workunit}.json")

    def failed_path(self, workunit):
        return os.path.join(self.failed_dir, f"{workunit}.json")

    def make_dirs(self):
        for folder in (self.specs_dir, self.checkpoints_dir, self.followups_dir, self.failed_dir,
                       self.quarantine_dir, self.staging_dir, self.store_dir, self.releases_dir):  # fmt: skip
            os.makedirs(folder, exist_ok=True)


def list_records(directory, suffix=".json"):
    """Record names (without suffix) in ``directory``, sorted; temporary files are skipped."""
    if not os.path.isdir(directory):
        return []
    return sorted(n[: -len(suffix)] for n in os.listdir(directory) if n.endswith(suffix) and not n.startswith("."))


def write_record(path, record):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomically(path, (json.dumps(record, sort_keys=True, indent=1) + "\n").encode())


def read_record(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def remove_if_present(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
