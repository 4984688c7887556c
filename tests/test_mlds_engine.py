"""``mlds run`` end to end: real trainer and validator processes, store, follow-ups, releases,
Ctrl-C and SIGKILL followed by a rerun."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mlds
from assimilator.store import DatasetStore

pytestmark = pytest.mark.slow

RUN = ["--machine", "ParityMachine", "--networks", "3",
       "--networks-per-workunit", "2", "--max-epochs", "3", "--epoch-budget", "2", "--workers", "2"]  # fmt: skip


def start_run(root, *extra):
    command = [sys.executable, "-m", "mlds.cli", "run", *RUN, "--root", str(root), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(process, needle):
    """Read the engine's event lines (stderr) until one contains ``needle``; returns them."""
    seen = []
    for line in process.stderr:
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"the run ended without a line containing {needle!r}: {seen}")


def stored(root):
    _, tables = DatasetStore(os.path.join(root, "store"), "DS1").read()
    return tables


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean") / "data"
    process = start_run(root)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return root, out, err


def test_run_builds_the_dataset_through_follow_ups_validation_and_release(clean_run):
    root, out, err = clean_run
    tables = stored(root)
    assert sorted(tables) == ["ParityMachine"]
    for table in tables.values():
        assert table.indices.tolist() == [0, 1, 2]
        assert all(e <= 3 for e in table.columns["epochs"])
    work = sorted(os.listdir(root / "work"))
    assert "DS1-ParityMachine-n000000-k2-c1" in work  # a follow-up resumed the networks after 2 epochs
    assert all(os.path.exists(root / "work" / name / "assimilated") for name in work)
    assert all(json.load(open(root / "work" / n / "verdict.json"))["verdict"] == "valid" for n in work)
    assert not os.listdir(root / "slots")
    release = root / "releases" / "MLDS-DS1-3.tar.gz"
    assert release.exists() and (root / "releases" / "MLDS-DS1-3.tar.gz.md5").exists()
    dataset = mlds.load_dataset(release)
    np.testing.assert_array_equal(dataset["ParityMachine"].weights, tables["ParityMachine"].weights)
    assert "ParityMachine" in out and "at cap" in out and f"release: {release}" in out
    converged = int(tables["ParityMachine"].columns["converged"].sum())
    assert f"ParityMachine             3/3   {converged:>9} {3 - converged:>7}" in out
    stats = json.load(open(root / "run-stats.json"))
    assert stats["networks_stored"] == 3 and stats["training_seconds"] > 0


def test_running_again_after_completion_changes_nothing(clean_run):
    root, _, _ = clean_run
    before = open(root / "store" / "DS1.h5", "rb").read()
    process = start_run(root)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert open(root / "store" / "DS1.h5", "rb").read() == before
    assert "0 networks stored" in out


def test_status_prints_the_table_and_writes_the_page(clean_run, tmp_path):
    root, _, _ = clean_run
    page = tmp_path / "status.html"
    result = subprocess.run([sys.executable, "-m", "mlds.cli", "status", "--root", str(root), "--html", str(page)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ParityMachine" in result.stdout and "100" in result.stdout  # target: the first milestone
    assert "ParityMachine" in page.read_text()


def _children_in_slots(root):
    slots = os.path.realpath(os.path.join(root, "slots"))
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.path.realpath(f"/proc/{pid}/cwd").startswith(slots):
                found.append(pid)
        except OSError:
            continue
    return found


def _children_left_in_slots(root, within=15.0):
    """Trainers still running in the slots once they had ``within`` seconds to die: the kernel
    sends them SIGKILL when the engine dies (PR_SET_PDEATHSIG), but on a loaded machine a killed
    child may not have been scheduled to exit yet when the engine's exit is reported."""
    deadline = time.monotonic() + within
    while (found := _children_in_slots(root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.mark.parametrize("interruption", ["ctrl_c", "sigkill"])
def test_an_interrupted_run_continues_to_the_same_dataset(clean_run, tmp_path, interruption):
    root = tmp_path / "data"
    process = start_run(root)
    wait_for_line(process, "networks stored")
    if interruption == "ctrl_c":
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
        assert process.returncode == 130, err
        assert "run the same command to continue" in err.lower()
    else:
        process.kill()
        process.communicate(timeout=60)
    assert interruption == "ctrl_c" or _children_left_in_slots(root) == []
    rerun = start_run(root)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    expected, tables = stored(clean_run[0]), stored(root)
    assert sorted(tables) == sorted(expected)
    for task, table in tables.items():
        assert table.indices.tolist() == [0, 1, 2]
        np.testing.assert_array_equal(table.weights, expected[task].weights)
        assert table.columns["epochs"].tolist() == expected[task].columns["epochs"].tolist()
    stats = json.loads((root / "run-stats.json").read_text())  # the rerun's own time, not the epochs before the stop
    assert 0 <= stats["training_seconds"] <= stats["train_process_seconds"], stats


def test_a_stopped_run_packed_and_continued_elsewhere_ends_as_the_same_dataset(clean_run, tmp_path):
    from mlds.run_state import pack, unpack

    root = tmp_path / "here"
    process = start_run(root)
    wait_for_line(process, "networks stored")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    manifest = pack(str(root), str(tmp_path / "run.tar.gz"))
    assert 1 <= manifest["assimilated"] < manifest["workunits"]  # stopped half way
    elsewhere = tmp_path / "elsewhere"
    unpack(str(tmp_path / "run.tar.gz"), str(elsewhere))
    rerun = start_run(elsewhere)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    expected, tables = stored(clean_run[0]), stored(elsewhere)
    assert sorted(tables) == sorted(expected)
    for task, table in tables.items():
        assert table.indices.tolist() == [0, 1, 2]
        np.testing.assert_array_equal(table.weights, expected[task].weights)
        np.testing.assert_array_equal(table.snapshots, expected[task].snapshots)
