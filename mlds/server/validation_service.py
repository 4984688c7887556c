"""The validation service: one process that imports the validator once and forks per result.

Why: ``script_validator`` runs ``bin/mlds_validate`` once per result, and a fresh Python with torch
costs about 2.5 s before any work. The service (``bin/mlds_validate_service``, a ``<daemon>`` of
the project) imports torch and the validator at start, listens on ``PROJECT/mlds/validate.sock``
and forks one child per request (``socketserver.ForkingMixIn``). The parent never runs a torch
operation, so no thread pool exists to be broken by ``fork``. Each child:

- applies the validator's resource limits for the result's spec (``validator.limits``: address
  space and CPU time), and uses one thread (one validation per core is the unit of throughput);
- runs exactly what the script would run in its own process (``validator.boinc_script.main``) and
  sends back the exit code and the log lines; if a limit kills it, the connection closes without
  an answer and the script validates in its own process, under the same limits (never *valid*).

It follows BOINC's daemon conventions (``mlds.server.daemon``): SIGHUP or ``stop_daemons`` stops it.
"""

import io
import json
import os
import socketserver
import threading

from mlds.server.daemon import DaemonLog
from mlds.server.validation_client import socket_path

MAX_CHILDREN = 64


def handle_request(project_root, request_line):
    """Validate in this (child) process; returns the answer dict."""
    from validator.boinc_script import main as validate_main

    arguments = json.loads(request_line)["arguments"]
    log_text = io.StringIO()
    code = validate_main(project_root, arguments, log=DaemonLog(stream=log_text), bound_resources=True)
    return {"exit_code": code, "log": log_text.getvalue()}


class ValidationServer(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    max_children = MAX_CHILDREN

    def __init__(self, project_root, log):
        self.project_root = project_root
        self.log = log
        path = socket_path(project_root)
        if os.path.exists(path):
            os.unlink(path)  # a socket left by a killed service
        super().__init__(path, _Handler)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        try:
            answer = handle_request(self.server.project_root, line)
        except Exception as exc:  # noqa: BLE001 - a bad request or a validator bug: transient, never valid
            answer = {"exit_code": 3, "log": f"validation service: {type(exc).__name__}: {exc}\n"}
        self.wfile.write((json.dumps(answer) + "\n").encode())


def serve(project, log, stop, poll_seconds=1.0):
    """Serve until SIGHUP or ``stop_daemons``."""
    import torch  # noqa: F401 - imported once here, so that children start warm

    import validator.boinc_script  # noqa: F401

    server = ValidationServer(project.root, log)
    log.normal(f"Starting: validation service on {socket_path(project.root)}")

    def watch():
        while not stop.sleep(poll_seconds):
            pass
        server.shutdown()

    threading.Thread(target=watch, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        if os.path.exists(socket_path(project.root)):
            os.unlink(socket_path(project.root))
    log.normal("Quitting")
