"""The tasks study (mlds.analysis.tasks): which task trained each network, on synthetic store files.

Synthetic weights are drawn alike for every machine, so the machines of one dataset are a null
(chance), and the planted z-gate shift of DS2 is the one difference a classifier can find: it must
tell the datasets apart and confuse the machines within each, which the confusion matrix shows.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import mlds

from mlds.analysis.report import write_study
from mlds.analysis.synthetic import SyntheticConfig, write_synthetic
from mlds.analysis.tasks import TasksConfig, load_networks, run_tasks
from mlds.cli import main

FAST = ("naive_bayes", "decision_tree")


def test_machines_drawn_alike_come_out_at_chance(tmp_path):
    ds1, _ = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect", "Parity"), networks=60, seed=11))
    study = run_tasks(TasksConfig((ds1,), seeds=5, features=("raw", "invariant"), classifiers=FAST))
    assert study["tasks"] == {"DS1/ParityMachine": 60, "DS1/SingleDirectMachine": 60} and study["chance"] == 0.5
    means = {(row, c): s["mean"] for row, scores in study["rows"].items() for c, s in scores.items()}
    # 120 networks, test folds of 24: the chance band of test_analysis_table2 (3.5 measured sd)
    assert all(0.29 <= m <= 0.71 for m in means.values()), means


def test_a_planted_dataset_difference_is_found_and_the_machines_within_stay_confused(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect", "Parity"), networks=40, shift=0.5, seed=12))
    study = run_tasks(TasksConfig(tuple(paths), seeds=3, features=("raw",), classifiers=FAST, controls=("shuffled", "norm")))
    names = list(study["tasks"])
    assert names == ["DS1/ParityMachine", "DS1/SingleDirectMachine", "DS2/ParityModified", "DS2/SingleDirectModified"]
    assert study["chance"] == 0.25
    best = max(s["mean"] for s in study["rows"]["raw"].values())
    assert 0.38 <= best <= 0.65  # the dataset (2 of 4), not the machine
    confusion = np.array(study["best"]["confusion"])
    assert confusion.sum() == 3 * 32  # 3 splits x test folds of 32
    across = confusion[:2, 2:].sum() + confusion[2:, :2].sum()
    assert across <= 0.1 * confusion.sum()  # DS1 networks are taken for DS1 tasks, DS2 for DS2
    assert max(s["mean"] for s in study["rows"]["shuffled"].values()) <= 0.45


def test_at_an_epoch_the_networks_that_trained_that_long_and_their_losses_then(tmp_path):
    ds1, _ = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect", "Parity"), networks=30, seed=13, snapshot_epochs=(1, 4)))
    config = TasksConfig((ds1,), seeds=2, features=("raw",), classifiers=FAST, epoch=4, min_networks=3)
    _, networks, _ = load_networks(config)
    dataset = mlds.load_dataset(ds1)
    expected = 0
    for task in ("ParityMachine", "SingleDirectMachine"):
        table = dataset[task]
        keep = table.metadata["converged"] & (table.metadata["epochs"] >= 4)
        expected += int(keep.sum())
    assert len(networks.labels) == expected < 60
    assert not np.isnan(networks.weights).any() and not np.isnan(networks.metadata).any()
    with pytest.raises(ValueError, match=r"keep weights after epochs \[1, 4\], not 3"):
        load_networks(TasksConfig((ds1,), epoch=3))


def test_the_command_writes_markdown_and_json_and_refuses_a_single_task(tmp_path):
    ds1, _ = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect", "Parity"), networks=20, seed=14))
    out = tmp_path / "results" / "tasks.md"
    done = CliRunner().invoke(main, ["analyze", "tasks", ds1, "--seeds", "2", "--features", "raw", "--classifiers", "naive_bayes",
                                     "--out", str(out)])  # fmt: skip
    assert done.exit_code == 0, done.output
    text = out.read_text()
    assert "chance (the largest task's share) 50.0 %" in text and "| DS1/ParityMachine | " in text
    study = json.loads(out.with_suffix(".json").read_text())
    assert study["study"] == "tasks" and set(study["rows"]) == {"raw", "metadata", "norm", "shuffled"}
    single = write_synthetic(tmp_path / "one", SyntheticConfig(networks=20, seed=15))[0]
    done = CliRunner().invoke(main, ["analyze", "tasks", single, "--classifiers", "naive_bayes"])
    assert done.exit_code == 1 and "needs two tasks" in done.output


def test_a_written_tasks_study_reads_back_as_the_same_markdown(tmp_path):
    ds1, _ = write_synthetic(tmp_path, SyntheticConfig(machines=("SingleDirect", "Parity"), networks=12, seed=16))
    study = run_tasks(TasksConfig((ds1,), seeds=2, features=("raw",), classifiers=("naive_bayes",), controls=()))
    markdown_path, json_path = write_study(study, str(tmp_path / "t.md"))
    assert json.loads(open(json_path).read())["tasks"] == study["tasks"]
    assert open(markdown_path).read().startswith("# Which task trained this network?")
