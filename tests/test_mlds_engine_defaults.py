"""What ``mlds run`` builds when not told: each dataset's local-run defaults (workgen.datasets),
and, slow, that DS3's defaults build a small dataset whose networks converge."""

import subprocess
import sys

import pytest

from mlds.engine import RunConfig


def test_each_dataset_plans_its_own_defaults():
    ds1, ds3 = RunConfig(datasets=("DS1", "DS3")).plans()
    assert (ds1.count, ds1.max_epochs, ds1.epoch_budget, ds1.tasks) == (8, 30, 10, None)
    assert len(ds1.task_names()) == 5
    assert (ds3.count, ds3.max_epochs, ds3.epoch_budget) == (4, 100, 50)
    assert ds3.task_names() == ("automaton-000", "automaton-001")


def test_options_given_win_over_the_defaults():
    (ds3,) = RunConfig(datasets=("DS3",), networks=2, max_epochs=7, epoch_budget=3, tasks=("automaton-005",)).plans()
    assert (ds3.count, ds3.max_epochs, ds3.epoch_budget, ds3.task_names()) == (2, 7, 3, ("automaton-005",))


def test_a_machine_of_another_dataset_is_refused():
    with pytest.raises(ValueError, match="DS3 has none of the machines ParityMachine"):
        RunConfig(datasets=("DS3",), tasks=("ParityMachine",)).plans()


@pytest.mark.slow
def test_mlds_run_ds3_with_its_defaults_converges_every_network(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlds.cli", "run", "--dataset", "DS3", "--root", str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("DS3 ")]
    # dataset, task, stored/target, converged, at cap
    assert [row[:5] for row in rows] == [["DS3", "automaton-000", "4/4", "4", "0"], ["DS3", "automaton-001", "4/4", "4", "0"]], result.stdout
