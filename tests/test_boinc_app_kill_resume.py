"""SIGKILL the standalone trainer at several moments; the same command finishes it exactly.

This is what a BOINC client does to an app in its slot: kill it at any moment and start the same
command again. The final weights and history must be bitwise identical to an uninterrupted run.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boinc_app import training
from boinc_app.result_file import read_result
from boinc_app.task_data import task_data
from boinc_app.workunit_spec import write_spec
from tests.conftest import SilentControl
from tests.test_boinc_app_training import assert_same_networks
from workgen.specs import make_spec

REPO = Path(__file__).resolve().parents[1]
SPEC = make_spec("DS2", "ParityModified", networks=2, seed=11, max_epochs=4)


def start_trainer(directory):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "boinc_app.main", "spec.json", "-o", "result.h5", "--checkpoint-period", "0"]
    return subprocess.Popen(command, cwd=directory, env=env, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def checkpoint_epochs(directory):
    try:
        _, state, _ = read_result(directory / "result.h5.checkpoint", spec=SPEC)
    except Exception:  # noqa: BLE001 - not there yet
        return -1
    return min(n.epochs for n in state.networks)


@pytest.fixture(scope="module")
def uninterrupted():
    return training.train(SPEC, task_data(SPEC), training.initial_state(SPEC), SilentControl())


KILL_POINTS = ["at-first-checkpoint", "at-epoch-2", "random-1", "random-2", "random-3"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_sigkill_then_same_command_finishes_bitwise_identical(tmp_path, uninterrupted, kill_point):
    write_spec(SPEC, tmp_path / "spec.json")
    process = start_trainer(tmp_path)
    if kill_point.startswith("random"):
        delay = random.Random(kill_point).uniform(1.0, 8.0)
        wait_for(lambda: False, process, timeout=delay)
    else:
        epochs = 1 if kill_point == "at-first-checkpoint" else 2
        assert wait_for(lambda: checkpoint_epochs(tmp_path) >= epochs, process), process.stderr.read()
    process.send_signal(signal.SIGKILL)
    process.wait()
    restarted = start_trainer(tmp_path)
    _, stderr = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, stderr
    _, state, attrs = read_result(tmp_path / "result.h5", spec=SPEC)
    assert attrs["complete"]
    assert_same_networks(state, uninterrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.h5", "spec.json"]


def test_sigterm_checkpoints_and_exits_75(tmp_path):
    write_spec(SPEC, tmp_path / "spec.json")
    process = start_trainer(tmp_path)
    assert wait_for(lambda: checkpoint_epochs(tmp_path) >= 1, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 75, stderr
    assert "run the same command to continue" in stderr
    assert checkpoint_epochs(tmp_path) >= 1
    assert not (tmp_path / "result.h5").exists()
