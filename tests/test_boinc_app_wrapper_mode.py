"""Wrapper mode: the fraction-done and checkpoint files BOINC's wrapper reads, and mode selection."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boinc_app import training
from boinc_app.result_file import read_result
from boinc_app.workunit_spec import write_spec
from boinc_app.main import DEFAULT_CHECKPOINT_PERIOD, wrapper_checkpoint_period
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.wrapper_files import WrapperControl, write_fraction_done
from tests.test_boinc_app_init_data import client_init_data_xml
from workgen.specs import make_spec, with_data

REPO = Path(__file__).resolve().parents[1]
SPEC = with_data(make_spec("DS1", "SingleDirectMachine", networks=1, max_epochs=1), train_size=64, validation_size=32)


def last_number(path):
    """What the wrapper reads: the last number in the file's last 32 bytes."""
    numbers = [float(token) for token in Path(path).read_bytes()[-32:].split() if token.replace(b".", b"").isdigit()]
    return numbers[-1]


def test_fraction_file_holds_one_clamped_number(tmp_path):
    path = tmp_path / "fraction_done"
    write_fraction_done(path, 1 / 3)
    assert path.read_text() == "0.333333\n" and last_number(path) == pytest.approx(0.333333)
    write_fraction_done(path, 1.5)
    assert last_number(path) == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fraction_done"]  # no temporaries left


def test_checkpoint_file_exists_from_the_start_and_changes_mtime_at_each_checkpoint(tmp_path):
    marker, fraction = tmp_path / "ckpt", tmp_path / "fraction"
    written = []
    control = WrapperControl(written.append, checkpoint_period=0.0, fraction_file=str(fraction), checkpoint_file=str(marker))
    assert marker.exists()  # the wrapper's first look only sets its baseline
    os.utime(marker, (1_000_000, 1_000_000))
    state = training.initial_state(SPEC)
    control.report_progress(state, 0.5)
    assert last_number(fraction) == 0.5
    control.checkpoint(state)
    assert written == [state]
    assert marker.stat().st_mtime > 1_000_000 and "epoch 0" in marker.read_text()
    WrapperControl(written.append, checkpoint_file=str(marker))
    assert "epoch 0" in marker.read_text()  # an existing file is left alone


def test_a_resumed_run_writes_its_fraction_before_the_first_epoch_ends(tmp_path):
    spec = with_data(make_spec("DS1", "SingleDirectMachine", networks=1, max_epochs=4), train_size=64, validation_size=32)
    write_spec(spec, tmp_path / "spec.json")
    config = TrainerConfig(str(tmp_path / "spec.json"), str(tmp_path / "result.h5"))
    fraction = tmp_path / "fraction_done"

    class QuitAfterTwo(WrapperControl):
        def report_progress(self, state, value):
            super().report_progress(state, value)
            if value >= 0.5:
                self.request_quit()

    with pytest.raises(training.QuitRequested):
        run_trainer(config, lambda write: QuitAfterTwo(write, checkpoint_period=1e9, fraction_file=str(fraction)))
    fraction.write_text("0.000000\n")  # a new slot's file, or the wrapper's own reset
    seen = []

    class Recording(WrapperControl):
        def report_progress(self, state, value):
            seen.append(last_number(fraction))  # what the wrapper read while the epoch ran
            super().report_progress(state, value)

    run_trainer(config, lambda write: Recording(write, checkpoint_period=1e9, fraction_file=str(fraction)))
    assert seen == [0.5, 0.75] and last_number(fraction) == 1.0


@pytest.mark.slow
def test_wrapper_options_win_over_init_data_and_resolve_logical_names(tmp_path):
    project, slot = tmp_path / "projects" / "p", tmp_path / "slots" / "0"
    project.mkdir(parents=True)
    slot.mkdir(parents=True)
    write_spec(SPEC, project / "wu_spec")
    (slot / "spec.json").write_text("<soft_link>../../projects/p/wu_spec</soft_link>\n")
    (slot / "result.h5").write_text("<soft_link>../../projects/p/wu_0_r0</soft_link>\n")
    (slot / "init_data.xml").write_text(client_init_data_xml())  # the wrapper's; not ours to use
    command = [sys.executable, "-m", "boinc_app.main", "spec.json", "-o", "result.h5", "--checkpoint-period", "0",
               "--wrapper-fraction-file", "fraction_done", "--wrapper-checkpoint-file", "checkpoint_marker"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=slot, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _, state, attrs = read_result(project / "wu_0_r0", spec=SPEC)
    assert attrs["complete"] and state.networks[0].epochs == 1
    assert last_number(slot / "fraction_done") == 1.0
    assert "epoch 1" in (slot / "checkpoint_marker").read_text()
    names = sorted(p.name for p in slot.iterdir())
    assert names == ["checkpoint_marker", "fraction_done", "init_data.xml", "result.h5", "spec.json"]


def test_an_orphan_writes_no_checkpoint(tmp_path):
    written, gone = [], []
    control = WrapperControl(written.append, checkpoint_file=str(tmp_path / "ckpt"), parent=os.getppid(), on_parent_gone=gone.append)
    state = training.initial_state(SPEC)
    control.checkpoint(state)
    assert written == [state] and gone == []
    orphan = WrapperControl(written.append, parent=os.getppid() + 1, on_parent_gone=lambda parent: gone.append(parent) or 1 / 0)
    with pytest.raises(ZeroDivisionError):  # on_parent_gone exits the process; here it raises instead
        orphan.checkpoint(state)
    assert written == [state] and gone == [os.getppid() + 1]


def test_checkpoint_period_is_the_volunteers_from_the_wrappers_init_data(tmp_path, capsys):
    path = tmp_path / "init_data.xml"
    assert wrapper_checkpoint_period(str(path)) == DEFAULT_CHECKPOINT_PERIOD  # a slot without one
    path.write_text(client_init_data_xml(checkpoint_period=7))
    assert wrapper_checkpoint_period(str(path)) == 7.0
    path.write_text(client_init_data_xml(checkpoint_period=0))
    assert wrapper_checkpoint_period(str(path)) == 300.0  # the API's fallback, as the wrapper's own app would use
    path.write_text("<app_init_data><checkpoint_period>soon</checkpoint_period>")
    assert wrapper_checkpoint_period(str(path)) == DEFAULT_CHECKPOINT_PERIOD
    assert "init_data.xml" in capsys.readouterr().err  # the fallback is said, naming the file


ORPHAN = """
import os, sys, time
from boinc_app.wrapper_files import watch_parent
def gone(parent):
    with open("gone", "w") as handle:
        handle.write(str(parent))
    os._exit(75)
watch_parent(os.getppid(), gone, period=0.05)
open("watching", "w").close()
time.sleep(120)
"""
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(120)
"""


def process_state(pid):
    """The state letter of ``pid`` in /proc, or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_a_trainer_whose_wrapper_was_killed_exits_by_itself(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, ORPHAN], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        wait_until(lambda: (tmp_path / "watching").exists(), 60, "the child to watch its parent")
        assert process_state(child) not in (None, "Z")
        assert not (tmp_path / "gone").exists()  # alive while its parent lives
        parent.kill()
        parent.wait(timeout=30)
        wait_until(lambda: (tmp_path / "gone").exists(), 30, "the orphan to notice")
        wait_until(lambda: process_state(child) in (None, "Z"), 30, "the orphan to exit")
        assert (tmp_path / "gone").read_text() == str(parent.pid)
    finally:
        parent.kill()
        parent.wait()
