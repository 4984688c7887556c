"""The client/app shared memory of BOINC (api_version >= 6), in pure Python.

Layout (``lib/app_ipc.h``, ``SHARED_MEM``; ``shared/reference/boinc-protocol.md`` §1.4): eight
message channels of 1024 bytes, 8192 bytes in all, in this order::

    #  offset  channel                   direction    content
    0  0       process_control_request   client->app  <quit/> <suspend/> <resume/> <abort/> ...
    1  1024    process_control_reply     app->client  (unused)
    2  2048    graphics_request          client->app  (unused)
    3  3072    graphics_reply            app->client  (graphics URLs; unused here)
    4  4096    heartbeat                 client->app  <heartbeat/><wss>..</wss><max_wss>..</max_wss>
    5  5120    app_status                app->client  CPU times, fraction done, fpops
    6  6144    trickle_up                app->client  (unused here)
    7  7168    trickle_down              client->app  (unused here)

A channel's byte 0 is the "message present" flag; bytes 1..1023 hold a NUL-terminated string of
at most 1022 characters. There is no lock: a sender writes only when the flag is 0, copies the
string and sets the flag *last*; a receiver copies the string and clears the flag *after*. The
client zeroes the whole area before each start.

Where the area lives:

- Unix: the client creates ``boinc_mmap_file`` (8192 bytes) in the slot and writes
  ``<shm_key>-1</shm_key>`` into init_data.xml; the app maps the file shared. (Without an
  ``<api_version>`` >= 6 in the app version the client uses a SysV segment instead, which pure
  Python cannot attach: that is a packaging error, reported as such.)
- Windows: the client creates a named file mapping ``shm_<comm_obj_name>`` (``comm_obj_name`` is
  ``boinc_<n>``), possibly with a ``Global\\`` prefix; the app opens the existing mapping, trying
  ``Global\\`` first as the C API does (``lib/shmem.cpp``, ``attach_shmem``). Python's
  ``mmap.mmap(-1, size, tagname=...)`` opens a mapping by name but would silently *create* one
  that does not exist, so existence is checked first with ``OpenFileMappingW``. Not run here (no
  Windows machine); the channel code it feeds is the same as on Unix and is tested.
"""

import mmap
import os
import sys

from boinc_app.boinc_errors import SharedMemoryError

MMAP_FILE = "boinc_mmap_file"
CHANNEL_SIZE = 1024
CHANNEL_NAMES = (
    "process_control_request", "process_control_reply", "graphics_request", "graphics_reply",
    "heartbeat", "app_status", "trickle_up", "trickle_down",
)  # fmt: skip
SHARED_MEM_SIZE = CHANNEL_SIZE * len(CHANNEL_NAMES)
MAX_MESSAGE = CHANNEL_SIZE - 2  # 1022 characters and the terminating NUL
SHM_PREFIX = "shm_"


class Channel:
    """One 1024-byte channel at ``offset`` in ``buffer`` (an mmap, bytearray, memoryview)."""

    def __init__(self, buffer, offset):
        self._buffer = buffer
        self._offset = offset

    def has_message(self):
        return self._buffer[self._offset] != 0

    def receive(self):
        """The pending message (str) and clear the flag; None if there is none."""
        if not self.has_message():
            return None
        start = self._offset + 1
        raw = bytes(self._buffer[start : start + CHANNEL_SIZE - 1])
        self._buffer[self._offset] = 0
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")

    def send(self, message):
        """Write ``message`` if the channel is free (returns False if the last one is unread)."""
        if self.has_message():
            return False
        data = message.encode("utf-8")[:MAX_MESSAGE] + b"\0"
        start = self._offset + 1
        self._buffer[start : start + len(data)] = data
        self._buffer[self._offset] = 1  # last: the reader trusts the text once the flag is set
        return True


class SharedMemory:
    """The eight channels over one 8192-byte buffer; attributes named as in ``SHARED_MEM``."""

    def __init__(self, buffer):
        if len(buffer) < SHARED_MEM_SIZE:
            raise SharedMemoryError(f"shared memory is {len(buffer)} bytes, expected {SHARED_MEM_SIZE}")
        self.buffer = buffer
        for index, name in enumerate(CHANNEL_NAMES):
            setattr(self, name, Channel(buffer, index * CHANNEL_SIZE))


def open_mmap_file(path=MMAP_FILE):
    """Map the slot's ``boinc_mmap_file`` shared, read-write (Unix clients)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise SharedMemoryError(f"{path}: cannot open the client's shared memory file: {exc.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        if size < SHARED_MEM_SIZE:
            raise SharedMemoryError(f"{path}: {size} bytes, expected {SHARED_MEM_SIZE} (not made by a BOINC client?)")
        return mmap.mmap(fd, SHARED_MEM_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)  # the mapping keeps its own reference


def windows_mapping_names(comm_obj_name):
    """The names to try for the client's mapping, in the C API's order."""
    name = SHM_PREFIX + comm_obj_name
    return ("Global\\" + name, name)


def open_windows_mapping(comm_obj_name, size=SHARED_MEM_SIZE):  # pragma: no cover - Windows only
    """Open the client's existing named mapping ``shm_<comm_obj_name>`` (Windows clients)."""
    for name in windows_mapping_names(comm_obj_name):
        if _windows_mapping_exists(name):
            return mmap.mmap(-1, size, tagname=name, access=mmap.ACCESS_WRITE)
    raise SharedMemoryError(f"no shared memory mapping {SHM_PREFIX}{comm_obj_name} (is the BOINC client running?)")


def _windows_mapping_exists(name):  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenFileMappingW.restype = wintypes.HANDLE
    kernel32.OpenFileMappingW.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR)
    file_map_all_access = 0xF001F
    handle = kernel32.OpenFileMappingW(file_map_all_access, False, name)
    if not handle:
        return False
    kernel32.CloseHandle(handle)
    return True


def attach(init_data, slot="."):
    """The client's shared memory for this task, per ``init_data`` and the platform."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        if not init_data.comm_obj_name:
            raise SharedMemoryError("init_data.xml has no <comm_obj_name>: cannot find the client's shared memory")
        return SharedMemory(open_windows_mapping(init_data.comm_obj_name))
    if init_data.shm_key != -1:
        raise SharedMemoryError(
            f"init_data.xml has <shm_key>{init_data.shm_key}</shm_key>: the client chose SysV shared memory, "
            "which this app cannot use; the app version must declare <api_version>7.20.0</api_version>"
        )
    return SharedMemory(open_mmap_file(os.path.join(slot, MMAP_FILE)))
