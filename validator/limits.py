"""Bounds on one validator process's memory and CPU time, sized from the workunit spec.

Why: the validator runs once per uploaded result, and a result is hostile. The reader
(``boinc_app.result_file``) refuses, before reading it, everything an honest trainer never writes,
which bounds what a file can make the validator read by the file's size. These limits are the
second line, for whatever those checks miss (a bug in libhdf5, a crafted structure nobody thought
of): the kernel stops the process instead of letting one upload take the server's memory or a core
for hours. ``validator.checks.validate_files(..., bound_resources=True)`` applies them once the
spec is read; they last until the process exits, so only a process that validates one result and
exits passes it (``mlds validate``, the script_validator script), never a test runner or a daemon.

The numbers (measured on Linux x86-64, torch 2.13 CPU, validating an honest DS1 result of 32
networks, 3 epochs, 4,000/1,000 sequences of length 50, one torch thread):

* ``import validator.checks`` (torch, numpy, h5py) maps 639 MB of address space (VmSize 13 MB
  before), and a CUDA build of torch maps more; so the address-space bound is *relative*: what
  the process has mapped when the limits are applied, plus a budget. The honest validation then
  peaks at +120 MB of address space (VmPeak 745-758 MB over 4 runs) and +100 MB of resident
  memory (VmHWM 320-332 MB).
  The budget is ``MEMORY_HEADROOM`` (256 MiB) + ``RESULT_SIZE_FACTOR`` (8) x the result's size
  limit (``max_result_bytes``: 6.9 MB here) + ``DATA_BYTES_PER_STEP`` (512 B) per regenerated
  training/validation step (250,000 steps here): 431 MiB here, 3.6 x the honest peak, and less than
  the 1 GiB that a single compression-bomb chunk of 2^28 float32 inflates to.
* The same validation takes 3.0 s of CPU after the imports (1.2 s). The CPU budget is
  ``CPU_BASE_SECONDS`` (30 s) + the re-evaluation's FLOPs (``boinc_app.flops``: 14.3 GFLOP here)
  at ``SLOW_FLOPS_PER_SECOND`` (5e8, 1/14 of the 7 GFLOP/s measured on one core) + the
  regenerated steps at ``SLOW_STEPS_PER_SECOND`` (1e5): 61 s here, 20 x the honest cost. Past it
  the kernel sends SIGXCPU, which raises ``ResourceLimitExceeded`` (the result is invalid: it
  costs more than any honest one); ``CPU_GRACE_SECONDS`` later it sends SIGKILL, for code that
  never returns to Python (script_validator counts a killed script as invalid too).

Torch is limited to one thread while bounded: validation is a few seconds of small matrix work,
and each extra thread would map its own stack and malloc arena inside the bound (on a busy 2-core
machine one thread was also 3 x faster than torch's default of one per core).

On a platform without ``resource`` (Windows) or ``/proc/self/statm`` (not Linux) the limits that
cannot be measured or set are left off; ``Limits`` says which were applied.
"""

import signal
import time
from dataclasses import dataclass

from boinc_app.flops import forward_step_flops

MEMORY_HEADROOM = 256 << 20
RESULT_SIZE_FACTOR = 8
DATA_BYTES_PER_STEP = 512
CPU_BASE_SECONDS = 30.0
SLOW_FLOPS_PER_SECOND = 5e8
SLOW_STEPS_PER_SECOND = 1e5
CPU_GRACE_SECONDS = 10


class ResourceLimitExceeded(BaseException):
    """Validation ran past its CPU bound. A BaseException, so that no ``except Exception`` between
    the signal and ``validate_files`` takes it for an ordinary error."""


@dataclass(frozen=True)
class Limits:
    address_space: int = None  # bytes (RLIMIT_AS), or None when not applied
    cpu_seconds: int = None  # process CPU seconds (RLIMIT_CPU soft limit), or None

    def describe(self):
        parts = [f"address space {self.address_space >> 20} MiB" if self.address_space else None,
                 f"CPU time {self.cpu_seconds} s" if self.cpu_seconds else None]  # fmt: skip
        return ", ".join(p for p in parts if p) or "no limits"


def generated_steps(spec):
    """Sequence steps of the training and validation sets the validator regenerates."""
    data = spec.data
    return (data.train_size + data.validation_size) * data.length


def memory_budget(spec):
    """Bytes of address space a validation of ``spec``'s result may add to what is mapped now."""
    from validator.checks import max_result_bytes

    return MEMORY_HEADROOM + RESULT_SIZE_FACTOR * max_result_bytes(spec) + DATA_BYTES_PER_STEP * generated_steps(spec)


def cpu_budget(spec):
    """CPU seconds a validation of ``spec``'s result may take. A check added to ``validate_result``
    that costs more than the re-evaluation (a spot check that re-trains networks) must add its
    cost here, or the kernel stops honest validations and they are judged invalid."""
    from validator.spot_check import reexecution_flops

    data = spec.data
    reevaluation = len(spec.networks) * data.validation_size * data.length * forward_step_flops(spec.architecture)
    flops = reevaluation + reexecution_flops(spec)
    return CPU_BASE_SECONDS + flops / SLOW_FLOPS_PER_SECOND + generated_steps(spec) / SLOW_STEPS_PER_SECOND


def mapped_bytes():
    """This process's address space now (Linux ``/proc/self/statm``), or None where unknown."""
    import resource

    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def apply_limits(spec, memory_bytes=None, cpu_seconds=None):
    """Bound this process for validating a result of ``spec`` (budgets: ``memory_budget``,
    ``cpu_budget``, or the ones given); returns the ``Limits`` applied. For a whole process: the
    limits cannot be lifted again."""
    try:
        import resource
    except ImportError:  # Windows
        return Limits()
    import torch

    torch.set_num_threads(1)
    memory_bytes = memory_budget(spec) if memory_bytes is None else memory_bytes
    cpu_seconds = cpu_budget(spec) if cpu_seconds is None else cpu_seconds
    mapped = mapped_bytes()
    address_space = _lower(resource, resource.RLIMIT_AS, mapped + memory_bytes) if mapped is not None else None
    soft = int(time.process_time() + cpu_seconds) + 1
    signal.signal(signal.SIGXCPU, _cpu_exceeded)
    return Limits(address_space, _lower(resource, resource.RLIMIT_CPU, soft, soft + CPU_GRACE_SECONDS))


def _lower(resource, which, soft, hard=None):
    """Set ``which`` to ``soft`` (and ``hard``, default ``soft``), never above the current hard
    limit (only root may raise one); returns the soft limit set, or None if it could not be set."""
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError):
        return None
    return soft


def _cpu_exceeded(signum, frame):
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # once: the hard limit kills if this cannot stop it
    raise ResourceLimitExceeded("validation ran past the validator's CPU time limit")


def disarm_cpu_signal():
    """After a verdict: a late SIGXCPU must not turn the verdict into a traceback (the hard limit
    still ends a process that runs on)."""
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
