"""The local engine's work directory: one folder per workunit, its state told by which files exist.

    work/<workunit>/spec.json        the workunit spec (the folder appears atomically with it)
    work/<workunit>/checkpoint.h5    follow-up workunits only: the previous result to resume from
    work/<workunit>/result.h5        the trainer's result, moved in atomically when it finished
    work/<workunit>/verdict.json     the validator's verdict (valid / invalid) and reason
    work/<workunit>/assimilated      marker: its networks are in the store and its follow-up exists

This plays the part of the BOINC database for ``mlds run``. Each state change is one atomic
operation (rename or atomic write), and every step can be repeated, so a kill at any moment leaves
a directory from which running again continues. A workunit folder is created by renaming a
complete temporary folder, so creating the same workunit twice keeps the first and never
duplicates it.
"""

import json
import os
import shutil

from boinc_app.atomic_file import write_atomically
from boinc_app.workunit_spec import read_spec, write_spec

CREATED, TRAINED, VALID, INVALID, ASSIMILATED = "created", "trained", "valid", "invalid", "assimilated"


class WorkDirectory:
    def __init__(self, root):
        self.root = os.path.join(os.fspath(root), "work")

    def folder(self, name):
        return os.path.join(self.root, name)

    def spec_path(self, name):
        return os.path.join(self.folder(name), "spec.json")

    def result_path(self, name):
        return os.path.join(self.folder(name), "result.h5")

    def input_paths(self, name):
        """The workunit's input files (what a BOINC client would download into the slot)."""
        folder = self.folder(name)
        return [os.path.join(folder, n) for n in ("spec.json", "checkpoint.h5") if os.path.exists(os.path.join(folder, n))]

    def create(self, spec, resume_source=None):
        """Add a workunit; returns False (and changes nothing) if it exists already."""
        target = self.folder(spec.name)
        if os.path.exists(target):
            return False
        os.makedirs(self.root, exist_ok=True)
        temporary = os.path.join(self.root, f".{spec.name}.tmp-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        os.makedirs(temporary)
        if resume_source is not None:
            shutil.copyfile(resume_source, os.path.join(temporary, spec.resume_from))
        write_spec(spec, os.path.join(temporary, "spec.json"))
        try:
            os.rename(temporary, target)
        except OSError:
            shutil.rmtree(temporary, ignore_errors=True)
            if not os.path.isdir(target):
                raise
            return False
        return True

    def names(self):
        if not os.path.isdir(self.root):
            return []
        return sorted(n for n in os.listdir(self.root) if not n.startswith("."))

    def remove_temporaries(self):
        """Folders a killed ``create`` left behind."""
        if os.path.isdir(self.root):
            for name in os.listdir(self.root):
                if name.startswith("."):
                    shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def spec(self, name):
        return read_spec(self.spec_path(name))

    def state(self, name):
        folder = self.folder(name)
        if os.path.exists(os.path.join(folder, "assimilated")):
            return ASSIMILATED
        verdict = self.verdict(name)
        if verdict is not None:
            return verdict["verdict"]
        if os.path.exists(self.result_path(name)):
            return TRAINED
        return CREATED

    def store_result(self, name, produced):
        """Move the trainer's output into the workunit folder (atomic rename, same file system)."""
        os.replace(produced, self.result_path(name))

    def record_verdict(self, name, verdict, reason=""):
        payload = json.dumps({"verdict": verdict, "reason": reason}).encode()
        write_atomically(os.path.join(self.folder(name), "verdict.json"), payload)

    def verdict(self, name):
        path = os.path.join(self.folder(name), "verdict.json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    def retry(self, name):
        """Forget an invalid result so the workunit is trained again (BOINC would send a new replica)."""
        for file in ("verdict.json", "result.h5"):
            path = os.path.join(self.folder(name), file)
            if os.path.exists(path):
                os.unlink(path)

    def mark_assimilated(self, name):
        write_atomically(os.path.join(self.folder(name), "assimilated"), b"")
