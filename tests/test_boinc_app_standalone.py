import io
import os
import signal

import pytest
import torch

from boinc_app import training
from boinc_app.standalone import StandaloneControl
from boinc_app.task_data import task_data
from workgen.specs import make_spec


def test_checkpoint_period_zero_checkpoints_after_every_epoch_and_large_never():
    written = []
    every = StandaloneControl(written.append, checkpoint_period=0.0)
    never = StandaloneControl(written.append, checkpoint_period=1e9)
    assert every.checkpoint_due() and not never.checkpoint_due()
    every.checkpoint("state")
    assert written == ["state"]


def test_sigterm_requests_a_checkpointed_quit():
    control = StandaloneControl(lambda state: None)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        control.install_signal_handlers()
        assert not control.quit_requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert control.quit_requested()
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_progress_lines_report_fraction_epoch_and_networks_training():
    spec = make_spec("DS1", "SingleDirectMachine", networks=2, max_epochs=1)
    state = training.initial_state(spec)
    stream = io.StringIO()
    StandaloneControl(lambda s: None, stream=stream).report_progress(state, 0.5)
    assert stream.getvalue() == "progress 0.500: epoch 0, 2 network(s) training\n"


@pytest.mark.gpu
@pytest.mark.parametrize("dataset, task", [("DS1", "SingleDirectMachine"), ("DS3", "automaton-000")])
def test_cuda_training_matches_cpu_within_tolerance(dataset, task):
    """GRU: the same stacked kernel on both; LSTM: PyTorch's fused kernel per network on the CPU
    against the stacked cell on the GPU."""
    spec = make_spec(dataset, task, networks=2, max_epochs=2)
    data = task_data(spec)
    states = {}
    for device in ("cpu", "cuda"):
        state = training.initial_state(spec)
        training.run_epoch(spec, data, state.networks, [0, 0], device=device)
        states[device] = state
    for cpu, gpu in zip(states["cpu"].networks, states["cuda"].networks):
        for key in cpu.weights:
            torch.testing.assert_close(torch.from_numpy(gpu.weights[key]), torch.from_numpy(cpu.weights[key]), rtol=1e-3, atol=1e-4)
