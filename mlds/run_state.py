"""A stopped ``mlds run`` as one portable archive: pack it here, unpack it on another machine, run on.

Why: a dataset build can outlive the machine it started on. A study's slow tasks (Parity's and
EightBit's long tails) take more hours than one machine session has, and a half-built dataset is
worth moving to a bigger machine (or one with a GPU) rather than starting again. The engine's root
is already a complete, kill-safe description of the build (``mlds.workdir``: each workunit's state
is which files exist; the store is journal + consolidated file; trainers resume from their slot
checkpoints), so the archive is that root, less what is no longer needed:
- ``work/<wu>/result.h5`` and ``checkpoint.h5`` of assimilated workunits (their networks are in
  the store, and a follow-up carries its own copy of the result it resumes from);
- ``releases/`` and ``status.html`` (written again from the store by the next run).

The run holds ``ROOT/run.lock`` (``hold_root``) while it works, and so does ``pack``: an archive is
never taken of a run in progress, whose files could be caught half way between two states (a
result moved out of its slot but not yet into ``work/``). ``unpack`` writes into an empty root only
and extracts with tarfile's ``data`` filter (regular files and folders inside the root; no links,
devices or absolute paths), after checking the manifest's format version.
"""

import fcntl
import io
import json
import os
import tarfile
from contextlib import contextmanager

from mlds.workdir import ASSIMILATED, WorkDirectory

LOCK_NAME = "run.lock"
MANIFEST_NAME = "mlds-run-state.json"
STATE_FORMAT = "mlds-run-state"
STATE_FORMAT_VERSION = 1
KEPT_FOLDERS = ("store", "work", "slots")
DROPPED_WHEN_ASSIMILATED = ("result.h5", "checkpoint.h5")


class RunStateError(Exception):
    """A root that cannot be packed or an archive that cannot be unpacked; the message says why."""


@contextmanager
def hold_root(root):
    """Hold ``ROOT/run.lock`` for the block; ``RunStateError`` if another process holds it."""
    os.makedirs(root, exist_ok=True)
    handle = open(os.path.join(root, LOCK_NAME), "a+", encoding="ascii")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunStateError(f"{root} is in use by another mlds process (pid {holder}); stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def packed_members(root):
    """The root's files the archive keeps, as paths relative to ``root``, sorted."""
    work = WorkDirectory(root)
    dropped = {os.path.join("work", name, file) for name in work.names() if work.state(name) == ASSIMILATED
               for file in DROPPED_WHEN_ASSIMILATED}  # fmt: skip
    members = []
    for folder in KEPT_FOLDERS:
        for directory, subfolders, files in os.walk(os.path.join(root, folder)):
            subfolders[:] = sorted(s for s in subfolders if not s.startswith("."))  # a killed create's temporaries
            for name in sorted(files):
                relative = os.path.relpath(os.path.join(directory, name), root)
                if relative not in dropped and not name.startswith("."):
                    members.append(relative)
    return members


def pack(root, output):
    """Write the stopped run under ``root`` to ``output`` (tar.gz); returns the manifest."""
    root = os.fspath(root)
    if not os.path.isdir(os.path.join(root, "work")):
        raise RunStateError(f"{root} holds no mlds run (no work/ folder)")
    with hold_root(root):
        members = packed_members(root)
        work = WorkDirectory(root)
        manifest = {
            "format": STATE_FORMAT,
            "format_version": STATE_FORMAT_VERSION,
            "workunits": len(work.names()),
            "assimilated": sum(work.state(n) == ASSIMILATED for n in work.names()),
            "files": len(members),
            "bytes": sum(os.path.getsize(os.path.join(root, m)) for m in members),
        }
        with tarfile.open(output, "w:gz") as archive:
            _add_bytes(archive, MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
            for member in members:
                info = archive.gettarinfo(os.path.join(root, member), arcname=member)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(os.path.join(root, member), "rb") as source:
                    archive.addfile(info, source)
    return manifest


def _add_bytes(archive, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def unpack(archive_path, root):
    """Extract a packed run into ``root``, which must hold no run; returns the manifest."""
    root = os.fspath(root)
    if any(os.path.exists(os.path.join(root, folder)) for folder in KEPT_FOLDERS):
        raise RunStateError(f"{root} already holds a run (work/, store/ or slots/); unpack into an empty folder")
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            manifest = _manifest(archive)
            members = [m for m in archive.getmembers() if m.name != MANIFEST_NAME]
            for member in members:  # every member checked before any is written
                if member.name.split("/")[0] not in KEPT_FOLDERS:
                    raise RunStateError(f"{archive_path}: member {member.name!r} is outside {', '.join(KEPT_FOLDERS)}")
                tarfile.data_filter(member, root)
            with hold_root(root):
                archive.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RunStateError(f"{archive_path}: not a readable run archive: {exc}") from None
    return manifest


def _manifest(archive):
    try:
        manifest = json.load(archive.extractfile(MANIFEST_NAME))
    except (KeyError, AttributeError, ValueError):
        raise RunStateError(f"no readable {MANIFEST_NAME}: not an archive of mlds state pack") from None
    if manifest.get("format") != STATE_FORMAT:
        raise RunStateError(f"not an mlds run archive (format {manifest.get('format')!r})")
    if manifest.get("format_version") != STATE_FORMAT_VERSION:
        raise RunStateError(
            f"run archive format_version {manifest.get('format_version')} is not known to this mlds "
            f"(it reads {STATE_FORMAT_VERSION}); upgrade mlds"
        )
    return manifest
