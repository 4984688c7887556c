"""``init_data.xml``: what the BOINC client tells an app about its task, read safely.

The client writes ``init_data.xml`` into the slot before every start (and again when preferences
change); its presence in the working directory is what puts the trainer in BOINC mode. The root
is ``<app_init_data>`` with one element per field, numbers written with C's ``%d``/``%f``
(``lib/app_ipc.cpp``, ``write_init_data_file``; field list in
``shared/reference/boinc-protocol.md`` §1.3). Nested blocks (``host_info``,
``global_preferences``, ``project_preferences``, …) are skipped: the trainer needs none of them.

The file is parsed with the standard library's expat (``xml.parsers.expat``), event by event,
and a document with a DOCTYPE is refused the moment its declaration starts, before any entity
could be declared, expanded or fetched (the client never writes one, so a DOCTYPE can only be an
attack or corruption). The frozen trainer so needs no lxml (10 MB of the bundle). Every error
names the file and the problem.

Defaults follow the client/API where a field is absent: ``fraction_done_end`` 1,
``checkpoint_period`` 0 meaning the API's fallback of 300 s, ``gpu_device_num`` -1 (no GPU).
"""

import math
import os
from dataclasses import dataclass

from xml.parsers import expat

from boinc_app.boinc_errors import InitDataError

INIT_DATA_FILE = "init_data.xml"
MAX_BYTES = 4 * 1024 * 1024  # the client's file is a few KB; project prefs may add some
DEFAULT_CHECKPOINT_PERIOD = 300.0  # the API's fallback when checkpoint_period is 0 or absent
MMAP_SHM_KEY = -1  # shm_key -1: use the slot's boinc_mmap_file (api_version >= 6)

_STRINGS = ("app_name", "wu_name", "result_name", "project_dir", "boinc_dir", "comm_obj_name", "gpu_type")
_INTS = (
    "major_version", "minor_version", "release", "app_version", "userid", "teamid", "hostid",
    "shm_key", "slot", "client_pid", "gpu_device_num", "gpu_opencl_dev_index",
)  # fmt: skip
_FLOATS = (
    "wu_cpu_time", "starting_elapsed_time", "checkpoint_period", "fraction_done_start",
    "fraction_done_end", "gpu_usage", "ncpus", "rsc_fpops_est", "rsc_fpops_bound",
    "rsc_memory_bound", "rsc_disk_bound", "computation_deadline",
)  # fmt: skip


@dataclass(frozen=True)
class InitData:
    """The fields of ``init_data.xml`` the trainer uses (names as the client writes them)."""

    major_version: int = 0
    minor_version: int = 0
    release: int = 0
    app_version: int = 0
    userid: int = 0
    teamid: int = 0
    hostid: int = 0
    app_name: str = ""
    wu_name: str = ""
    result_name: str = ""
    project_dir: str = ""
    boinc_dir: str = ""
    shm_key: int = None  # Unix; None when absent
    comm_obj_name: str = ""  # Windows: the mapping is shm_<comm_obj_name>
    slot: int = -1
    client_pid: int = 0
    wu_cpu_time: float = 0.0  # CPU seconds at the task's last checkpoint (restarts)
    starting_elapsed_time: float = 0.0
    checkpoint_period: float = 0.0
    fraction_done_start: float = 0.0
    fraction_done_end: float = 1.0
    gpu_type: str = ""  # "NVIDIA", "ATI", "intel_gpu", … or empty for a CPU task
    gpu_device_num: int = -1
    gpu_opencl_dev_index: int = -1
    gpu_usage: float = 0.0
    ncpus: float = 1.0
    rsc_fpops_est: float = 0.0
    rsc_fpops_bound: float = 0.0
    rsc_memory_bound: float = 0.0
    rsc_disk_bound: float = 0.0
    computation_deadline: float = 0.0

    @property
    def checkpoint_seconds(self):
        """Seconds between checkpoints: the user's disk interval, or the API's 300 s when 0."""
        return self.checkpoint_period if self.checkpoint_period > 0 else DEFAULT_CHECKPOINT_PERIOD

    @property
    def threads(self):
        """Torch threads: the app version's ``avg_ncpus`` rounded down, at least one."""
        return max(1, int(self.ncpus))

    def overall_fraction(self, fraction):
        """The app's fraction of its own work mapped into [fraction_done_start, fraction_done_end]."""
        return self.fraction_done_start + fraction * (self.fraction_done_end - self.fraction_done_start)


def read_init_data(path=INIT_DATA_FILE):
    """Parse the client's ``init_data.xml``; raises ``InitDataError`` naming the problem."""
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise InitDataError(f"{path}: {size} bytes, more than the limit of {MAX_BYTES}")
        with open(path, "rb") as handle:
            payload = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InitDataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_init_data(payload, source=path)


def parse_init_data(payload, source=INIT_DATA_FILE):
    """``InitData`` from the bytes of an ``init_data.xml``."""
    values = {}
    for tag, text, nested in _fields(payload, source):
        kind = _kind(tag)
        if kind is None or tag in values:
            continue  # a field or block the trainer does not use; a repeated field keeps its first value
        if nested:
            raise InitDataError(f"{source}: <{tag}> must hold a value, not elements")
        values[tag] = _convert(kind, text.strip(), tag, source)
    data = InitData(**values)
    _check(data, source)
    return data


class _Doctype(Exception):
    """Raised from expat's handler: the document declares a DOCTYPE."""


def _fields(payload, source):
    """``[(tag, text, nested)]`` for each child of the ``<app_init_data>`` root, in order, where
    ``text`` is the child's own text and ``nested`` whether it holds elements."""
    fields, path = [], []
    parser = expat.ParserCreate()

    def start(tag, _attributes):
        if not path and tag != "app_init_data":
            raise InitDataError(f"{source}: root element is <{tag}>, expected <app_init_data>")
        if len(path) == 1:
            fields.append([tag, "", False])
        elif len(path) == 2:
            fields[-1][2] = True
        path.append(tag)

    def text(data):
        if len(path) == 2:
            fields[-1][1] += data

    def doctype(*_):
        raise _Doctype()

    parser.StartElementHandler, parser.EndElementHandler = start, lambda _tag: path.pop()
    parser.CharacterDataHandler, parser.StartDoctypeDeclHandler = text, doctype
    parser.EntityDeclHandler = doctype  # never reached without a DOCTYPE; kept as a second lock
    try:
        parser.Parse(payload, True)
    except _Doctype:
        raise InitDataError(f"{source}: has a DOCTYPE (the BOINC client never writes one); refused") from None
    except expat.ExpatError as exc:
        raise InitDataError(f"{source}: not well-formed XML: {exc}") from None
    return [tuple(field) for field in fields]


def _kind(tag):
    for kind, names in ((str, _STRINGS), (int, _INTS), (float, _FLOATS)):
        if tag in names:
            return kind
    return None


def _convert(kind, text, tag, source):
    if kind is str:
        return text
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        raise InitDataError(f"{source}: <{tag}> is {text[:40]!r}, not a number") from None
    if kind is float and not math.isfinite(value):
        raise InitDataError(f"{source}: <{tag}> is {text!r}, not a finite number")
    return value


def _check(data, source):
    if not 0.0 <= data.fraction_done_start <= data.fraction_done_end <= 1.0:
        raise InitDataError(
            f"{source}: fraction_done_start {data.fraction_done_start} and fraction_done_end "
            f"{data.fraction_done_end} must satisfy 0 <= start <= end <= 1"
        )
    for name in ("wu_cpu_time", "checkpoint_period", "ncpus"):
        if getattr(data, name) < 0:
            raise InitDataError(f"{source}: <{name}> is negative ({getattr(data, name)})")
