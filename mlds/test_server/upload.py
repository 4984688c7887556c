"""The upload handler: BOINC's ``file_upload_handler`` protocol, with a hostile client in mind.

The client POSTs one of two requests (client/file_xfer.cpp, sched/file_upload_handler.cpp):

* ``<data_server_request>...<get_file_size>NAME</get_file_size></data_server_request>`` before
  uploading a file of 8192 bytes or more: the answer is how many bytes the server already holds, so an
  interrupted upload resumes there;
* a header ``<data_server_request>...<file_upload><file_info><name>NAME</name>...</file_info>
  <nbytes>N</nbytes><md5_cksum>M</md5_cksum><offset>O</offset><data>`` and a newline, followed
  directly by bytes O..N-1 of the file (no closing tags).

Every answer is ``<data_server_reply><status>S</status>[<file_size>]/[<message>]</data_server_reply>``
with S = 0 (done), 1 (transient: retry later) or -1 (permanent: give up on this file).

What is refused, permanently: a header over 64 KiB or without ``<data>``, a name that is not an
output file of a result this server sent and that is still in progress (so no other name, no path,
no ``..`` can be written), a size above the output's ``max_nbytes`` from the result template (the
client's own ``max_nbytes`` is not trusted) and a body longer than announced. A body shorter than
announced, a file locked by a concurrent upload or an offset beyond what the server holds are
transient, as in BOINC. The handler writes straight into the upload hierarchy at the offset, like
BOINC's: the result is only used after the client reports it, when its size and md5 are checked.
"""

import fcntl
import math
import os
import re
from dataclasses import dataclass

from lxml import etree

from mlds.test_server import db
from mlds.test_server.errors import ProjectError, ProtocolError, UploadRefused
from mlds.test_server.project import check_physical_name
from mlds.test_server.xmlsafe import clean_text, parse_xml

MAX_HEADER = 64 << 10
HARD_LIMIT = 1 << 30  # never more than this, whatever a template says
BLOCK = 256 << 10
DATA_MARK = b"<data>\n"


@dataclass(frozen=True)
class UploadHeader:
    kind: str  # "get_file_size" or "file_upload"
    name: str
    nbytes: int = 0
    offset: int = 0


def reply(status, message="", file_size=None):
    root = etree.Element("data_server_reply")
    etree.SubElement(root, "status").text = str(status)
    if file_size is not None:
        etree.SubElement(root, "file_size").text = str(file_size)
    if message:
        etree.SubElement(root, "message").text = clean_text(message)
    return etree.tostring(root, pretty_print=True)


def _field(header, tag):
    match = re.search(rf"<{tag}>([^<]*)</{tag}>".encode(), header)
    return match.group(1).decode("utf-8", errors="replace").strip() if match else None


def _integer(header, tag, required):
    text = _field(header, tag)
    if text is None:
        if required:
            raise UploadRefused(f"missing <{tag}>")
        return 0
    try:
        value = float(text)
    except ValueError:
        raise UploadRefused(f"<{tag}> {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise UploadRefused(f"<{tag}> must be a non-negative integer")
    return int(value)


def parse_header(prefix):
    """``(UploadHeader, header_length)`` from the first bytes of the body (at most ``MAX_HEADER``)."""
    mark = prefix.find(DATA_MARK)
    if mark < 0:
        if b"<get_file_size>" in prefix:
            root = parse_xml(prefix, "get_file_size request", limit=MAX_HEADER)
            return UploadHeader("get_file_size", (root.findtext("get_file_size") or "").strip()), len(prefix)
        raise UploadRefused("Missing <data> tag" if len(prefix) < MAX_HEADER else "upload header too long")
    header = prefix[:mark]
    if b"<file_upload>" not in header:
        raise UploadRefused("not a file upload request")
    name = _field(header, "name")
    if not name:
        raise UploadRefused("Missing name")
    nbytes = _integer(header, "nbytes", required=True)
    return UploadHeader("file_upload", name, nbytes, _integer(header, "offset", required=False)), mark + len(DATA_MARK)


def _declared_output(config, name):
    """The ``result_file`` row of ``name`` joined with its result's state; refuses anything else."""
    try:
        check_physical_name(name)
    except ProjectError:
        raise UploadRefused(f"invalid filename: {name[:80]!r}") from None
    connection = config.connect()
    try:
        row = connection.execute(
            "SELECT f.max_nbytes, r.server_state FROM result_file f JOIN result r ON r.id = f.result_id WHERE f.name = ?",
            (name,),
        ).fetchone()
    finally:
        connection.close()
    if row is None:
        raise UploadRefused(f"{name} is not an output file of any result")
    return row


def file_size_reply(config, name):
    _declared_output(config, name)
    path = config.upload_path(name)
    return reply(0, file_size=os.path.getsize(path) if os.path.isfile(path) else 0)


def handle_upload(config, stream, content_length):
    """Serve one POST to the upload handler; returns the reply bytes (never raises ``ProtocolError``)."""
    try:
        if content_length < 0:
            raise UploadRefused("a Content-Length is required")
        prefix = stream.read(min(content_length, MAX_HEADER))
        header, header_length = parse_header(prefix)
        if header.kind == "get_file_size":
            return file_size_reply(config, header.name)
        receive(config, header, prefix[header_length:], stream, content_length - len(prefix))
        return reply(0)
    except UploadRefused as exc:
        return reply(1 if exc.transient else -1, str(exc))
    except ProtocolError as exc:
        return reply(-1, str(exc))


def receive(config, header, first, stream, remaining):
    """Write bytes ``offset..nbytes`` of a declared output file; raises ``UploadRefused``."""
    row = _declared_output(config, header.name)
    limit = min(row["max_nbytes"], HARD_LIMIT)
    if header.nbytes > limit:
        raise UploadRefused(f"file size ({header.nbytes // 1024} KB) exceeds limit ({limit // 1024} KB)")
    path = config.upload_path(header.name)
    expected = header.nbytes - header.offset
    if len(first) + remaining != max(expected, 0):
        raise UploadRefused(f"the body holds {len(first) + remaining} bytes of data, the header announces {expected}")
    if row["server_state"] != db.IN_PROGRESS:
        if os.path.isfile(path) and os.path.getsize(path) == header.nbytes:
            return  # a repeated upload of a file we already hold
        raise UploadRefused(f"{header.name} belongs to a result that is not in progress")
    if expected <= 0:
        return
    _write(path, config.upload_dir, header, first, stream, remaining)


def _write(path, upload_dir, header, first, stream, remaining):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    root = os.path.realpath(upload_dir)
    if os.path.commonpath([os.path.realpath(os.path.dirname(path)), root]) != root:
        raise UploadRefused("upload path leaves the upload directory")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UploadRefused(f"can't open file {header.name}: {exc.strerror}", transient=True) from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UploadRefused(f"can't lock file {header.name}: another upload is in progress", transient=True) from None
        if os.fstat(fd).st_size < header.offset:
            raise UploadRefused(f"length of file {header.name} < offset {header.offset} bytes", transient=True)
        os.ftruncate(fd, header.offset)
        os.lseek(fd, header.offset, os.SEEK_SET)
        written = _copy(fd, first, stream, remaining)
        if written != header.nbytes - header.offset:
            raise UploadRefused(f"EOF on socket read: got {written} of {header.nbytes - header.offset} bytes", transient=True)
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(fd, first, stream, remaining):
    _write_all(fd, first)
    written = len(first)
    while remaining > 0:
        block = stream.read(min(BLOCK, remaining))
        if not block:
            break
        _write_all(fd, block)
        written += len(block)
        remaining -= len(block)
    return written


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
