"""The validator process's memory and CPU bounds (``validator.limits``).

Limits last for the whole process, so every bounded validation runs in a child process. A child
either validates the honest result under its limits (which must still pass), or has
``validate_result`` replaced by something that runs past a bound (an allocation, a Python loop, a
loop inside C that never returns to Python) and reports the verdict.
"""

import json
import signal
import subprocess
import sys

import pytest

from validator.checks import validate_files
from validator.limits import CPU_BASE_SECONDS, cpu_budget, memory_budget
from workgen.specs import make_spec

CHILD = """
import hashlib, json, resource, sys, time
import numpy as np
import torch
import validator.checks as checks
import validator.limits as limits

spec_path, result_path, mode = sys.argv[1:4]

def allocate(spec, path, *rest):
    return np.ones(4 << 30, np.uint8).sum()  # 4 GiB

def python_loop(spec, path, *rest):
    while True:
        pass

def c_loop(spec, path, *rest):
    hashlib.pbkdf2_hmac("sha256", b"key", b"salt", 10**9)  # minutes in one C call that checks no signals

if mode != "honest":
    checks.validate_result = {"allocate": allocate, "python_loop": python_loop, "c_loop": c_loop}[mode]
    limits.cpu_budget = lambda spec: 1.0
    limits.CPU_GRACE_SECONDS = 1
outcome = checks.validate_files(spec_path, result_path, bound_resources=True)
print(json.dumps({
    "verdict": outcome.verdict, "reason": outcome.reason,
    "address_space": resource.getrlimit(resource.RLIMIT_AS), "cpu": resource.getrlimit(resource.RLIMIT_CPU),
    "threads": torch.get_num_threads(), "cpu_used": time.process_time(),
}))
"""


def run_child(small_result, mode, timeout=120):
    spec_path, result = small_result
    command = [sys.executable, "-c", CHILD, str(spec_path), str(result), mode]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def child_outcome(small_result, mode):
    done = run_child(small_result, mode)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_honest_result_is_valid_under_the_limits(small_result):
    outcome = child_outcome(small_result, "honest")
    assert outcome["verdict"] == "valid", outcome
    soft_as, hard_as = outcome["address_space"]
    assert soft_as == hard_as and 0 < soft_as < 4 << 30, outcome  # bounded, and below what is allocated next
    soft_cpu, hard_cpu = outcome["cpu"]
    assert CPU_BASE_SECONDS <= soft_cpu < hard_cpu and outcome["cpu_used"] < soft_cpu, outcome
    assert outcome["threads"] == 1


def test_allocation_past_the_memory_bound_is_invalid(small_result):
    outcome = child_outcome(small_result, "allocate")
    assert outcome["verdict"] == "invalid", outcome
    assert "needed more memory than the validator's bound (address space" in outcome["reason"]


def test_python_loop_past_the_cpu_bound_is_invalid(small_result):
    outcome = child_outcome(small_result, "python_loop")
    assert outcome["verdict"] == "invalid", outcome
    assert outcome["reason"] == "validation ran past the validator's CPU time limit"


def test_loop_in_c_past_the_cpu_bound_is_killed(small_result):
    """SIGXCPU's handler cannot run inside C code; the hard limit kills the process, which
    script_validator counts as invalid."""
    done = run_child(small_result, "c_loop")
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stdout, done.stderr)


def test_memory_error_without_limits_is_transient(small_result, monkeypatch):
    """Unbounded, running out of memory is the server's state, not the result's fault."""

    def allocate(spec, path, *rest):
        raise MemoryError()

    monkeypatch.setattr("validator.checks.validate_result", allocate)
    outcome = validate_files(*small_result)
    assert (outcome.verdict, outcome.reason) == ("transient", "internal error while validating: MemoryError: ")


def test_budgets_of_a_32_network_ds1_workunit_leave_margin_over_the_honest_measurement():
    """An honest validation of this workunit was measured at +120 MB of address space (+100 MB
    resident) and 3.0 s of CPU after the imports (``validator.limits``' docstring)."""
    spec = make_spec("DS1", "ParityMachine", networks=32, max_epochs=3)
    assert 3 * (120 << 20) < memory_budget(spec) < 1 << 30  # and below a 1 GiB bomb chunk
    assert 10 * 3.0 < cpu_budget(spec) < 120


@pytest.mark.parametrize("networks", [1, 32, 64])
def test_budgets_grow_with_the_workunit(networks):
    small, big = (make_spec("DS1", "ParityMachine", networks=n, max_epochs=3) for n in (networks, 2 * networks))
    assert memory_budget(small) < memory_budget(big) and cpu_budget(small) < cpu_budget(big)
