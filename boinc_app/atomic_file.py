"""Atomic file replacement: write a temporary file beside the target, fsync, rename, fsync the dir.

A reader (or a restarted trainer after SIGKILL) sees either the old complete file or the new one,
never a torn write. ``replace_atomically`` lets a writer (e.g. h5py) fill the temporary path.
"""

import contextlib
import os


@contextlib.contextmanager
def replace_atomically(path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    _fsync_directory(directory)


def write_atomically(path, payload):
    with replace_atomically(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(payload)


def _fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
