"""The HTTP side: a ``ThreadingHTTPServer`` on a loopback address serving one test project.

Routes, as a BOINC project lays them out (the client only needs the master URL; everything else it
learns from the master page and the scheduler replies):

    GET  /                              master page with <link rel="boinc_scheduler" ...>
    POST /cgi-bin/cgi                   scheduler RPC (``scheduler`` + ``reply``)
    GET  /download/<hex>/<name>         app and input files, with ``Range: bytes=N-`` for resumed downloads
    POST /cgi-bin/file_upload_handler   uploads (``upload``)

Why loopback only: the server has no accounts, no TLS and one shared account key; it exists so a
real client on the same machine can exercise the project's programs. Binding another address is
refused. The validator and assimilator (``daemons``) run in a background thread of the same process,
woken whenever a client reports results.
"""

import ipaddress
import logging
import os
import re
import signal
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mlds.test_server import reply, scheduler, upload
from mlds.test_server.daemons import DaemonRunner
from mlds.test_server.errors import ProjectError, ProtocolError
from mlds.test_server.project import check_physical_name, fanout_dir, load_project

DEFAULT_PORT = 31480
DRAIN_LIMIT = 4 << 20
log = logging.getLogger("mlds.test_server")


@dataclass(frozen=True)
class ServeConfig:
    project: str
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    max_jobs: int = 4  # results per scheduler RPC at most
    daemon_interval: float = 2.0
    run_daemons: bool = True


class BoincLogFormatter(logging.Formatter):
    """BOINC's daemon log shape: ``timestamp [CRITICAL|NORMAL|DEBUG] message``."""

    def format(self, record):
        level = "CRITICAL" if record.levelno >= logging.ERROR else "NORMAL" if record.levelno >= logging.INFO else "DEBUG"
        return f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')} [{level}] {record.getMessage()}" + (
            f"\n{self.formatException(record.exc_info)}" if record.exc_info else ""
        )


class ProjectServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, serve_config, project):
        if not ipaddress.ip_address(serve_config.host).is_loopback:
            raise ProjectError(f"{serve_config.host} is not a loopback address; the test server serves 127.0.0.1 only")
        super().__init__((serve_config.host, serve_config.port), RequestHandler)
        self.serve_config = serve_config
        self.project = project
        self.urls = reply.ServerUrls(f"http://{serve_config.host}:{self.server_port}", project.fanout)
        self.runner = DaemonRunner(project)


class BodyReader:
    """The request body, never read past ``Content-Length``."""

    def __init__(self, stream, length):
        self.stream, self.remaining = stream, length

    def read(self, size):
        data = self.stream.read(max(0, min(size, self.remaining)))
        self.remaining -= len(data)
        return data


class RequestHandler(BaseHTTPRequestHandler):
    server_version = "mlds-test-server/1"

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path in ("/", "/index.html", "/index.php"):
            page = reply.master_page(self.server.project, self.server.urls)
            return self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
        if self.path.startswith("/download/"):
            return self._download()
        return self._send(404, b"not found\n")

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self):  # noqa: N802
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        body = BodyReader(self.rfile, max(length, 0))
        if self.path == "/cgi-bin/cgi":
            self._scheduler(body, length)
        elif self.path == "/cgi-bin/file_upload_handler":
            self._send(200, upload.handle_upload(self.server.project, body, length))
        else:
            self._send(404, b"not found\n")
        self._drain(body)

    def _drain(self, body):
        if body.remaining > DRAIN_LIMIT:
            self.close_connection = True
            return
        while body.remaining and body.read(1 << 16):
            pass

    def _scheduler(self, body, length):
        if length < 0 or length > scheduler.MAX_REQUEST_BYTES:
            return self._send(413 if length > 0 else 411, b"scheduler request too large or without Content-Length\n")
        try:
            request = scheduler.parse_request(body.read(length))
        except ProtocolError as exc:
            log.info("refused scheduler request: %s", exc)
            return self._send(400, f"{exc}\n".encode("utf-8"))
        config = self.server.serve_config
        outcome = scheduler.handle_request(self.server.project, request, max_jobs=config.max_jobs)
        document = reply.build_reply(self.server.project, self.server.urls, outcome, request.p_fpops)
        log.info(
            "[HOST#%d] scheduler RPC: %d reported, %d sent", outcome.hostid, len(outcome.acks), len(outcome.sent)
        )
        self._send(200, document, "text/xml")
        if outcome.acks:
            self.server.runner.wake.set()

    def _download(self):
        path = self._download_path()
        if path is None or not os.path.isfile(path):
            return self._send(404, b"not found\n")
        size = os.path.getsize(path)
        start = _range_start(self.headers.get("Range"), size)
        if start is None:
            return self._send(416, b"bad range\n")
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return None
        with open(path, "rb") as handle:
            handle.seek(start)
            for block in iter(lambda: handle.read(1 << 16), b""):
                self.wfile.write(block)
        return None

    def _download_path(self):
        """The hierarchy path for ``/download/<hex>/<name>``, or None for anything else."""
        parts = self.path.split("?", 1)[0].split("/")[2:]
        project = self.server.project
        try:
            name = check_physical_name(parts[-1]) if parts else ""
        except ProjectError:
            return None
        expected = [fanout_dir(name, project.fanout), name] if project.fanout else [name]
        return project.download_path(name) if parts == expected else None


def _range_start(header, size):
    """The first byte of ``Range: bytes=N-`` (0 without a Range header); None if unusable."""
    if not header:
        return 0
    match = re.fullmatch(r"\s*bytes=(\d+)-\s*", header)
    if not match or int(match.group(1)) > size:
        return None
    return int(match.group(1))


def configure_logging(stream=None):
    handler = logging.StreamHandler(stream)
    handler.setFormatter(BoincLogFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def serve(serve_config, ready=None):
    """Serve until SIGINT/SIGTERM. ``ready(server)`` is called once the socket listens."""
    project = load_project(serve_config.project)
    server = ProjectServer(serve_config, project)
    stop = threading.Event()
    worker = threading.Thread(
        target=server.runner.run_forever, args=(stop, serve_config.daemon_interval), name="daemons", daemon=True
    )
    if serve_config.run_daemons:
        worker.start()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if ready:
            ready(server)
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        server.runner.wake.set()
        server.server_close()
        if worker.is_alive():
            worker.join(timeout=60)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
