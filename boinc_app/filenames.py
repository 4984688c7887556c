"""Logical file names in a BOINC slot, and the names this app uses.

A BOINC client never puts a task's files in the slot under their physical names. Each input and
output appears in the slot under its *logical* name (the ``<open_name>`` of the job templates),
as one of (``shared/reference/boinc-protocol.md`` §1.2; ``lib/app_ipc.cpp``,
``boinc_resolve_filename``):

- a small text file whose first line is ``<soft_link>../../projects/P/physical</soft_link>``: the
  client's default; the path is relative to the slot. Output links point at files that do not
  exist yet, so the app writes straight into the project directory, where the client uploads
  from;
- a real symlink (the project sent ``<use_symlinks/>``);
- the file itself (``<copy_file/>``), or nothing at all (standalone): the name is used unchanged.

The C API returns a symlink's own name (``fopen`` follows it). This module returns the symlink's
*target* instead, because the trainer writes atomically (temporary file, then rename): renaming
onto the link's name would replace the link in the slot and the client would upload nothing.

Logical names of the mlds app (the packaging's job templates use these)::

    spec.json       input: the workunit spec (boinc_app.workunit_spec)
    checkpoint.h5   optional input: a previous result to continue; the spec's ``resume_from``
                    names it (workgen writes ``checkpoint.h5``), so this is not fixed here
    result.h5       output: the result file (boinc_app.result_file)

The command line is the standalone one, ``mlds-train spec.json -o result.h5``: the trainer
resolves its arguments. Its own periodic checkpoint stays in the slot as
``result.h5.checkpoint`` (the slot survives restarts; the client deletes it when the task ends).
These are the names the local engine (``mlds.slots``) uses in its slot directories too.
"""

import os
import re

SPEC_NAME = "spec.json"
RESULT_NAME = "result.h5"
CHECKPOINT_SUFFIX = ".checkpoint"
_SOFT_LINK = re.compile(rb"<soft_link>\s*(.*?)\s*</soft_link>")
_FIRST_LINE_BYTES = 512  # what the C API reads (one fgets into a 512-byte buffer)


def resolve(logical, slot="."):
    """The path to open for ``logical`` in ``slot``: soft link or symlink target, else the name."""
    path = os.path.join(slot, logical)
    if os.path.islink(path):
        return os.path.join(os.path.dirname(path), os.readlink(path))
    try:
        with open(path, "rb") as handle:
            first = handle.readline(_FIRST_LINE_BYTES)
    except OSError:  # missing (standalone, or an output not written yet) or unreadable
        return path
    match = _SOFT_LINK.search(first)
    if not match:
        return path
    target = os.fsdecode(match.group(1))
    return target if os.path.isabs(target) else os.path.join(slot, target)


def slot_checkpoint_path(output_logical, slot="."):
    """Where the trainer keeps its own checkpoint in a slot: beside the output's logical name."""
    return os.path.join(slot, output_logical + CHECKPOINT_SUFFIX)
