"""The fast path of ``bin/mlds_validate``: ask the project's validation service, if it runs.

``script_validator`` starts the init script once per result. Starting Python and importing torch
costs about 2.5 s before any work, more than validating a result, so the project runs one
long-lived validation service (``mlds.server.validation_service``) that has imported everything
once and forks a child per result; ``bin/mlds_validate`` only connects to its socket. This module
is imported by that script before anything heavy: it needs only the standard library. When the
service is not running (or not installed) the script validates in its own process, as before:
slower, same verdict.

Protocol (one request per connection, UTF-8 JSON lines): the script sends
``{"arguments": [...]}`` (script_validator's tokens) and receives ``{"exit_code": N, "log": "..."}``.
A connection closed without an answer (the child died: a memory or CPU limit killed it) makes the
script validate in its own process under the same limits: a hostile file that hangs HDF5 inside C
code (found: a zeroed global heap makes reading a string attribute spin) is then killed again, and
``script_validator`` counts a killed script as invalid. Answering *transient* instead would have
BOINC retry it for ever.
"""

import json
import os
import socket
import sys

SOCKET_NAME = "validate.sock"  # in PROJECT/mlds/
TRANSIENT = 3
ANSWER_TIMEOUT_SECONDS = 3600.0


def socket_path(project_root):
    return os.path.join(project_root, "mlds", SOCKET_NAME)


def ask_service(project_root, arguments, timeout=ANSWER_TIMEOUT_SECONDS):
    """``(exit_code, log)`` from the service, or None when no service listens."""
    path = socket_path(project_root)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:
        client.close()
        return None
    with client:
        client.settimeout(timeout)
        client.sendall((json.dumps({"arguments": list(arguments)}) + "\n").encode())
        try:
            answer = client.makefile("rb").readline()
        except OSError as exc:
            return TRANSIENT, f"the validation service did not answer: {exc}"
    if not answer:
        sys.stderr.write("the validation service's child died without a verdict (a limit?): validating in this process\n")
        return None
    reply = json.loads(answer)
    return int(reply["exit_code"]), str(reply.get("log", ""))
