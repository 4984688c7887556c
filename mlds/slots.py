"""Run the trainer and the validator as separate processes, the way BOINC runs them.

Training happens in a slot directory per workunit, ``slots/<workunit>/``, as in a BOINC client: the
workunit's input files appear there under their logical names (``spec.json``, ``checkpoint.h5``),
the trainer runs in standalone mode with the slot as its working directory, writes ``result.h5``
there and keeps its checkpoint beside it. If the engine stops (Ctrl-C, or a kill) the slot stays,
and the same command run again in it resumes from the checkpoint. The trainer's stderr goes to
``stderr.txt`` in the slot, as BOINC keeps it.

Validation runs ``mlds validate SPEC RESULT`` as a process and reads its exit code, exactly as a
BOINC server's ``script_validator`` would call it.

Children die with the engine (Linux ``PR_SET_PDEATHSIG``): a killed engine must not leave a trainer
writing into a slot that the next run reuses.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from workgen.plan import RESUME_NAME

PR_SET_PDEATHSIG = 1


def _child_environment():
    """One thread per child: the engine runs one child per core, and torch's default of one
    thread per core would oversubscribe the machine many times over."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _die_with_parent():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


@dataclass
class Job:
    kind: str  # "train" or "validate"
    name: str  # the workunit
    process: subprocess.Popen
    started: float
    slot: str = None

    def elapsed(self):
        return time.monotonic() - self.started


def slot_path(root, name):
    return os.path.join(os.fspath(root), "slots", name)


def _link_or_copy(source, target):
    if os.path.exists(target):
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def start_training(root, workdir, name, threads=1, checkpoint_period=60.0):
    """Start the trainer for workunit ``name`` in its slot (resuming if the slot has a checkpoint)."""
    slot = slot_path(root, name)
    os.makedirs(slot, exist_ok=True)
    for source in workdir.input_paths(name):
        _link_or_copy(source, os.path.join(slot, os.path.basename(source)))
    command = [
        sys.executable, "-m", "boinc_app.main", "spec.json", "-o", "result.h5",
        "--threads", str(threads), "--checkpoint-period", str(checkpoint_period),
    ]  # fmt: skip
    with open(os.path.join(slot, "stderr.txt"), "ab") as stderr:
        process = subprocess.Popen(
            command, cwd=slot, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, preexec_fn=_die_with_parent,
            env=_child_environment(),
        )
    return Job("train", name, process, time.monotonic(), slot)


def start_validation(workdir, name):
    command = [sys.executable, "-m", "mlds.cli", "validate", workdir.spec_path(name), workdir.result_path(name)]
    previous = [path for path in workdir.input_paths(name) if os.path.basename(path) == RESUME_NAME]
    command += ["--resume", previous[0]] if previous else []  # a follow-up: the spot check continues from it
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
        env=_child_environment(),
    )
    return Job("validate", name, process, time.monotonic())


def stderr_tail(slot, lines=5):
    try:
        with open(os.path.join(slot, "stderr.txt"), encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).strip()
    except OSError:
        return ""


def remove_slot(root, name):
    shutil.rmtree(slot_path(root, name), ignore_errors=True)


def stop(jobs, grace_seconds=60.0):
    """Ask running children to checkpoint and stop (SIGTERM), then wait; kill what is left."""
    for job in jobs:
        if job.process.poll() is None:
            job.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for job in jobs:
        try:
            job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
