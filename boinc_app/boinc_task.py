"""Starting the trainer in a BOINC slot: init_data.xml, slot lock, shared memory, device, names.

BOINC mode is selected when the working directory holds ``init_data.xml``: the client writes it
into the slot before starting an app, and nothing else does (``mlds run``'s local slots and plain
``mlds-train`` runs have none, and stay in standalone mode). Start-up follows the C API's
``boinc_init``: read init_data.xml, lock the slot, attach the shared memory, choose the device,
resolve the logical file names (``boinc_app.filenames``), read the spec and start the timer
thread, all within a second or two, before the slow part of start-up (making the training data),
so that suspend, quit and abort are heard during it.

The client decides what the command line cannot: checkpoint period (``checkpoint_period``, the
user's "write to disk at most every" preference), torch threads (``ncpus``) and the device
(``gpu_type``, ``gpu_device_num``). A GPU the client assigned that torch cannot use (no CUDA/ROCm,
device index out of range) is a temporary exit: the driver may come back after a reboot, or the
task may run on another device later. A GPU type torch cannot drive at all is a permanent error.
"""

import os
from dataclasses import dataclass

import torch

from boinc_app import flops, shared_memory
from boinc_app.boinc_control import BoincControl, log
from boinc_app.boinc_errors import BoincAppError, TemporaryExit
from boinc_app.filenames import resolve, slot_checkpoint_path
from boinc_app.init_data import INIT_DATA_FILE, read_init_data
from boinc_app.slot_files import take_slot_lock
from boinc_app.trainer import TrainerConfig
from boinc_app.workunit_spec import read_spec

TORCH_GPU_TYPES = ("NVIDIA", "ATI")  # torch.cuda drives both (CUDA, or ROCm/HIP builds)
GPU_RETRY_SECONDS = 300


def boinc_mode_selected(slot="."):
    return os.path.exists(os.path.join(slot, INIT_DATA_FILE))


def slot_config(spec, output, slot=".", checkpoint=None, **settings):
    """A ``TrainerConfig`` for logical names in a slot: inputs and output resolved, the trainer's
    own checkpoint kept in the slot (default ``<output>.checkpoint``)."""
    return TrainerConfig(
        resolve(spec, slot),
        resolve(output, slot),
        checkpoint or slot_checkpoint_path(output, slot),
        resolve_input=lambda name: resolve(name, slot),
        **settings,
    )


def select_device(init_data, cuda=torch.cuda):
    """``"cpu"``, or ``"cuda:N"`` for the GPU the client assigned to this task."""
    kind = init_data.gpu_type
    if not kind:
        return "cpu"
    if kind not in TORCH_GPU_TYPES:
        raise BoincAppError(f"the client assigned a {kind} GPU; this app drives only {', '.join(TORCH_GPU_TYPES)}")
    number = max(init_data.gpu_device_num, 0)
    if not cuda.is_available():
        raise TemporaryExit(GPU_RETRY_SECONDS, f"{kind} GPU {number} assigned but torch sees no usable GPU")
    count = cuda.device_count()
    if number >= count:
        raise TemporaryExit(GPU_RETRY_SECONDS, f"{kind} GPU {number} assigned but torch sees only {count} GPU(s)")
    return f"cuda:{number}"


@dataclass
class BoincTask:
    init_data: object
    control: BoincControl
    config: TrainerConfig
    lock_fd: int


def start_task(spec, output, hard_exit, slot="."):
    """Everything before training; raises ``BoincAppError`` (incl. ``TemporaryExit``) or ``SpecError``."""
    init_data = read_init_data(os.path.join(slot, INIT_DATA_FILE))
    lock_fd = take_slot_lock(slot)
    memory = shared_memory.attach(init_data, slot)
    device = select_device(init_data)
    config = slot_config(
        spec, output, slot, checkpoint_period=init_data.checkpoint_seconds, threads=init_data.threads, device=device
    )
    workunit = read_spec(config.spec_path)
    count_flops = lambda state: flops.trained_flops(workunit, state.networks)  # noqa: E731
    control = BoincControl(init_data, memory, hard_exit, count_flops).start()
    log(
        f"BOINC mode: task {init_data.result_name or '?'} ({workunit.name}), device {device}, "
        f"{config.threads} thread(s), checkpoint every {init_data.checkpoint_seconds:.0f} s",
    )
    return BoincTask(init_data, control, config, lock_fd)
