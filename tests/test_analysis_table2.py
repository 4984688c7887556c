"""The Table 2 study's null checks and its power (mlds.analysis.table2 on synthetic store files).

The chance spread was measured on 20 synthetic null datasets (120 networks a task, seeds 100-119;
docs/results/README.md, "Null check"): one classifier's mean accuracy over 5 splits has a standard
deviation of 0.058 for two halves of a task (60 + 60 networks, test folds of 24) and 0.032 for a
label shuffle (120 + 120, folds of 48); the best of the six classifiers averages 0.555 (sd 0.047)
on the halves and 0.540 (sd 0.022) on the shuffle. The bands below are 3.5 of those deviations,
scaled to other fold sizes as a binomial's (by sqrt(24 / fold)); a planted difference lands far above.
"""

import json
import math
from dataclasses import replace

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from boinc_app.training import HISTORY_FIELDS
from mlds.analysis import pairs
from mlds.analysis.classifiers import CLASSIFIERS, evaluate, splits
from mlds.analysis.features import feature_matrix
from mlds.analysis.synthetic import SyntheticConfig, write_synthetic
from mlds.analysis.report import write_study
from mlds.analysis.table2 import Table2Config, run_table2

FAST_TWO = ("naive_bayes", "decision_tree")

MEASURED_SD, MEASURED_FOLD = 0.058, 24  # one classifier's mean over 5 splits on a null pair (module docstring)
BEST_OF_SIX_EXCESS, BEST_OF_SIX_SD = 0.055, 0.047  # the best of six: mean above 0.5, and its spread


def chance_band(test_fold):
    half = 3.5 * MEASURED_SD * math.sqrt(MEASURED_FOLD / test_fold)
    return 0.5 - half, 0.5 + half


def best_of_six_ceiling(test_fold):
    return 0.5 + (BEST_OF_SIX_EXCESS + 3.5 * BEST_OF_SIX_SD) * math.sqrt(MEASURED_FOLD / test_fold)


@pytest.fixture(scope="module")
def null_pair(tmp_path_factory):
    """One task's 120 converged networks (plus 2 unconverged) and its DS2 side, no planted difference."""
    paths = write_synthetic(tmp_path_factory.mktemp("null"), SyntheticConfig(networks=120, seed=7))
    _, (pair,) = pairs.machine_pairs(paths)
    return pair


def null_scores(pair, feature_set):
    features = feature_matrix(feature_set, pair.weights, pair.architecture)
    return evaluate(features, pair.labels, splits(pair.labels, pair.groups, seeds=5))


def assert_at_chance(scores, test_fold):
    low, high = chance_band(test_fold)
    means = {name: round(s.mean, 3) for name, s in scores.items()}
    assert all(low <= m <= high for m in means.values()), means
    assert max(means.values()) <= best_of_six_ceiling(test_fold), means


def test_unconverged_networks_are_left_out_and_counted(null_pair):
    assert null_pair.counts == (120, 120) and null_pair.excluded == (2, 2)
    assert null_pair.groups is None  # independent seeds: stratified splits


@pytest.mark.slow
@pytest.mark.parametrize("feature_set", ["raw", "invariant"])
def test_two_halves_of_one_task_labelled_as_different_come_out_at_chance(null_pair, feature_set):
    halves = pairs.halves(null_pair, np.random.default_rng(2019))
    assert halves.counts == (60, 60)
    rows = null_pair.weights[null_pair.labels == 0]
    assert len({r.tobytes() for r in halves.weights} & {r.tobytes() for r in rows}) == 120  # DS1 rows, each once
    assert_at_chance(null_scores(halves, feature_set), test_fold=24)


@pytest.mark.slow
def test_a_label_shuffle_comes_out_at_chance(null_pair):
    shuffled = pairs.shuffled(null_pair, np.random.default_rng(2019))
    assert shuffled.counts == (120, 120) and not np.array_equal(shuffled.labels, null_pair.labels)
    assert_at_chance(null_scores(shuffled, "raw"), test_fold=48)


@pytest.mark.slow
def test_a_planted_difference_is_detected_and_the_study_writes_its_table(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=30, shift=0.3, seed=3))
    out = tmp_path / "results" / "table2.md"
    study = run_table2(Table2Config(tuple(paths), controls=("norm",)))
    write_study(study, str(out))
    (pair,) = study["pairs"]
    best = pair["best_weight_detector"]
    assert best["mean"] >= 0.9 and best["auc_mean"] >= 0.95, best
    assert json.loads(out.with_suffix(".json").read_text())["pairs"][0]["best_weight_detector"] == best
    assert "| SingleDirect | 30 / 30 (2 / 2) | stratified |" in out.read_text()
    assert pair["networks"] == {"DS1": 30, "DS2": 30} and pair["excluded_unconverged"] == {"DS1": 2, "DS2": 2}
    assert set(pair["rows"]["raw"]) == set(CLASSIFIERS) and all(len(s["accuracy"]) == 5 for s in pair["rows"]["raw"].values())


def test_twins_are_kept_on_one_side_of_every_split(tmp_path):
    # before SPEC_VERSION 7 DS2 network i started from DS1 network i's seed: ungrouped splits put a
    # twin with the other label in the training fold and score far *below* chance
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=40, twins=True, seed=5))
    _, (pair,) = pairs.machine_pairs(paths)
    assert pair.groups is not None
    grouped = splits(pair.labels, pair.groups, seeds=5)
    assert all(not set(pair.groups[train]) & set(pair.groups[test]) for train, test in grouped)
    features = feature_matrix("raw", pair.weights, pair.architecture)
    fair = evaluate(features, pair.labels, grouped, ("svm",))["svm"].mean
    leaky = evaluate(features, pair.labels, splits(pair.labels, None, seeds=5), ("svm",))["svm"].mean
    low, high = chance_band(test_fold=16)
    assert low <= fair <= high and leaky < 0.3, (fair, leaky)


def test_overlapping_releases_count_each_network_once(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=10, seed=1))
    _, (pair,) = pairs.machine_pairs(paths + paths)
    assert pair.counts == (10, 10) and pair.duplicates == 24


def test_the_command_writes_markdown_and_json(tmp_path):
    from mlds.cli import main

    paths = write_synthetic(tmp_path, SyntheticConfig(networks=12, shift=0.5, seed=2))
    out = tmp_path / "t2.md"
    arguments = ["analyze", "table2", *paths, "--seeds", "2", "--features", "invariant", "--classifiers", "naive_bayes",
                 "--controls", "metadata,norm,shuffled,halves", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "| SingleDirect | 12 / 12 (2 / 2) | stratified | 81–100 % |" in out.read_text()
    study = json.loads(out.with_suffix(".json").read_text())
    assert [s["file"] for s in study["sources"]] == ["DS1.h5", "DS2.h5"] and len(study["sources"][0]["md5"]) == 32
    assert set(study["pairs"][0]["rows"]) == {"invariant", "metadata", "norm", "shuffled", "halves"}


def test_the_command_says_when_the_files_hold_no_pair(tmp_path):
    from mlds.cli import main

    ds1, _ = write_synthetic(tmp_path, SyntheticConfig(networks=4))
    result = CliRunner().invoke(main, ["analyze", "table2", ds1, "--classifiers", "naive_bayes"])
    assert result.exit_code == 1 and "no machine pair" in result.output and "DS1/SingleDirectMachine" in result.output


def test_a_pair_with_too_few_converged_networks_is_skipped_and_said(tmp_path):
    few = write_synthetic(tmp_path / "few", SyntheticConfig(machines=("Parity",), networks=4, unconverged=3))
    enough = write_synthetic(tmp_path / "enough", SyntheticConfig(networks=12, shift=0.5))
    study = run_table2(Table2Config(tuple(few + enough), seeds=2, features=("invariant",), classifiers=("naive_bayes",), controls=()))
    assert [p["machine"] for p in study["pairs"]] == ["SingleDirect"]
    assert study["skipped"] == ["Parity: 4 / 4 converged networks (3 / 3 not converged), fewer than 10 per side"]
    with pytest.raises(ValueError, match="no pair has enough"):
        run_table2(Table2Config(tuple(few), seeds=2, features=("invariant",), classifiers=("naive_bayes",), controls=()))


def test_a_norm_neutral_planted_difference_is_found_beyond_the_norm_control(tmp_path):
    # the study's point: weights can carry what the training-length controls cannot see
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=40, norm_neutral=True, seed=4))
    _, (pair,) = pairs.machine_pairs(paths)
    folds = splits(pair.labels, pair.groups, seeds=5)
    names = ("svm", "random_forest", "naive_bayes")
    found = evaluate(feature_matrix("invariant", pair.weights, pair.architecture), pair.labels, folds, names)
    norm = evaluate(feature_matrix("norm", pair.weights, pair.architecture), pair.labels, folds, names)
    assert max(s.mean for s in found.values()) >= 0.9, {n: s.mean for n, s in found.items()}
    low, high = chance_band(test_fold=16)
    assert all(low <= s.mean <= high for s in norm.values()), {n: s.mean for n, s in norm.items()}


def ingested_pair(root, twin_seeds):
    """DS1/DS2 store files of SingleDirect written by the store's own ingest: 12 initial networks a side,
    one capped; ``twin_seeds`` gives network j of both sides the seeds 1 + j, as specs before SPEC_VERSION 7 did."""
    import dataclasses

    from assimilator.store import DatasetStore
    from boinc_app.training import CAPPED, CONVERGED, initial_state
    from workgen.specs import make_spec

    for dataset, machine in (("DS1", "SingleDirectMachine"), ("DS2", "SingleDirectModified")):
        spec = make_spec(dataset, machine, networks=12, max_epochs=5)
        if twin_seeds:
            seeds = tuple(dataclasses.replace(n, init_seed=1 + j, order_seed=1 + j) for j, n in enumerate(spec.networks))
            spec = dataclasses.replace(spec, networks=seeds)
        state = initial_state(spec)
        for j, network in enumerate(state.networks):
            network.status, network.epochs, network.cpu_seconds = (CAPPED if j == 0 else CONVERGED), 3 + j % 2, 1.0
            for field in network.history:
                network.history[field] = [0.5, 0.9]
        attrs = {"spec_sha256": spec.fingerprint(), "app_version": "0.1.0", "torch_version": "2.13.0", "platform": "test", "device": "CPU"}
        store = DatasetStore(root, dataset)
        store.ingest(spec, state, attrs)
        store.consolidate()
    return [str(root / "DS1.h5"), str(root / "DS2.h5")]


@pytest.mark.parametrize("twin_seeds, split", [(False, "stratified"), (True, "grouped by shared seed (GroupShuffleSplit)")])
def test_stores_of_the_pipeline_are_read_with_their_seed_design(tmp_path, twin_seeds, split):
    paths = ingested_pair(tmp_path, twin_seeds)
    study = run_table2(Table2Config(tuple(paths), seeds=2, features=("raw",), classifiers=("naive_bayes",), controls=("metadata",)))
    (pair,) = study["pairs"]
    assert pair["split"] == split
    assert pair["networks"] == {"DS1": 11, "DS2": 11} and pair["excluded_unconverged"] == {"DS1": 1, "DS2": 1}


def test_at_epoch_keeps_the_networks_that_trained_that_long(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=20, seed=8, snapshot_epochs=(1, 4)))
    _, (pair,) = pairs.machine_pairs(paths)
    assert pair.snapshot_epochs == (1, 4)
    assert pairs.at_epoch(pair, 1).counts == pair.counts == (20, 20)
    at_four = pairs.at_epoch(pair, 4)
    reached = pair.metadata["epochs"] >= 4
    assert at_four.counts == (int(reached[pair.labels == 0].sum()), int(reached[pair.labels == 1].sum()))
    np.testing.assert_array_equal(at_four.weights, pair.snapshots[reached, 1])
    assert not np.isnan(at_four.weights).any()
    assert pairs.at_epoch(pair, 3) is None  # not a snapshot epoch of the files


@pytest.mark.slow
def test_equal_training_rows_compare_both_sides_after_the_same_epoch(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=30, shift=0.3, seed=3, snapshot_epochs=(1, 2, 10)))
    study = run_table2(Table2Config(tuple(paths), seeds=2, features=("raw", "invariant"), controls=("norm",)))
    (pair,) = study["pairs"]
    everyone, nobody = {"DS1": 30, "DS2": 30, "all": True, "history": True}, {"DS1": 0, "DS2": 0, "all": False, "history": False}
    assert pair["equal_training_networks"] == {"1": everyone, "2": everyone, "10": nobody}
    # every feature set and the progress control; nobody reached 10
    at_epochs = ["raw@1", "invariant@1", "norm@1", "metadata@1", "raw@2", "invariant@2", "norm@2", "metadata@2"]
    assert [name for name in pair["rows"] if "@" in name] == at_epochs
    assert max(s["mean"] for s in pair["rows"]["raw@1"].values()) >= 0.9  # the planted shift is in every snapshot
    out = tmp_path / "table2.md"
    write_study(study, str(out))
    text = out.read_text()
    assert "At equal training (networks DS1 / DS2 after epoch 1: 30 / 30, after epoch 2: 30 / 30, after epoch 10: 0 / 0)" in text
    summary = text.split("\n| SingleDirect |")[1].split("\n")[0]
    assert "after epoch 2 (all networks): " in summary and "(norm " in summary and "; metadata " in summary


def test_files_with_different_snapshot_epochs_are_refused(tmp_path):
    first = write_synthetic(tmp_path / "a", SyntheticConfig(networks=4, snapshot_epochs=(1,)))
    second = write_synthetic(tmp_path / "b", SyntheticConfig(networks=4, snapshot_epochs=(2,), seed=1))
    with pytest.raises(ValueError, match="snapshots after different epochs"):
        pairs.machine_pairs([first[0], second[0], first[1]])


def test_at_epoch_gives_each_network_its_losses_after_that_epoch_not_its_final_ones(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=12, seed=9, snapshot_epochs=(1, 2)))
    _, (pair,) = pairs.machine_pairs(paths)
    at_two = pairs.at_epoch(pair, 2)
    history = pair.snapshot_history[:, 1]  # every synthetic network trained at least 2 epochs
    for name in pairs.EPOCH_METADATA_COLUMNS:
        np.testing.assert_array_equal(at_two.metadata[name], history[:, HISTORY_FIELDS.index(name)])
    assert not np.array_equal(at_two.metadata["train_loss"], pair.metadata["train_loss"])  # not the final losses
    assert (at_two.metadata["epochs"] == 2).all() and pairs.has_history(at_two)


def test_a_difference_in_progress_at_equal_training_is_the_metadata_rows_not_the_weights(tmp_path):
    """DS2 networks behind in loss after each epoch, weights drawn alike: ``metadata@e`` separates,
    the weights do not, and the summary's margin at equal training is negative."""
    config = SyntheticConfig(networks=40, seed=4, snapshot_epochs=(1, 2), snapshot_loss_shift=0.5)
    study = run_table2(Table2Config(tuple(write_synthetic(tmp_path, config)), seeds=3, features=("raw",),
                                    classifiers=("naive_bayes", "decision_tree"), controls=("norm",)))  # fmt: skip
    (pair,) = study["pairs"]
    assert min(s["mean"] for s in pair["rows"]["metadata@2"].values()) >= 0.95
    assert max(s["mean"] for s in pair["rows"]["raw@2"].values()) <= best_of_six_ceiling(16)
    out = tmp_path / "table2.md"
    write_study(study, str(out))
    cells = out.read_text().split("\n| SingleDirect |")[1].split("\n")[0].split(" | ")
    assert cells[-5].startswith("after epoch 2 (all networks): raw@2") and float(cells[-4]) < -20


def test_files_before_store_format_4_give_no_progress_control_and_the_table_says_so(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=12, seed=5, snapshot_epochs=(1,)))
    for path in paths:
        with h5py.File(path, "r+") as f:  # as the version-3 writer left it
            f.attrs["format_version"] = 3
            del f.attrs["snapshot_history_fields"]
            for task in f:
                del f[task]["snapshot_history"]
    study = run_table2(Table2Config(tuple(paths), seeds=2, features=("raw",), classifiers=("naive_bayes",), controls=("norm",)))
    (pair,) = study["pairs"]
    assert pair["equal_training_networks"]["1"]["history"] is False and "metadata@1" not in pair["rows"]
    out = tmp_path / "table2.md"
    write_study(study, str(out))
    assert "losses not kept" in out.read_text()


def test_the_null_pair_runs_at_equal_training_too(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=48, shift=0.3, seed=6, snapshot_epochs=(1,)))
    study = run_table2(Table2Config(tuple(paths), seeds=3, features=("raw",), classifiers=("naive_bayes", "decision_tree"),
                                    controls=("halves",)))  # fmt: skip
    (pair,) = study["pairs"]
    assert min(s["mean"] for s in pair["rows"]["raw@1"].values()) >= 0.9  # the planted shift
    assert max(s["mean"] for s in pair["rows"]["halves@1"].values()) <= best_of_six_ceiling(10)  # 24 + 24 DS1 halves
    out = tmp_path / "table2.md"
    write_study(study, str(out))
    assert "; halves " in out.read_text().split("\n| SingleDirect |")[1].split("\n")[0]


def test_at_accuracy_takes_each_network_at_its_first_snapshot_past_the_threshold(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=10, seed=17, snapshot_epochs=(1, 2, 3)))
    _, (pair,) = pairs.machine_pairs(paths)
    history = np.full(pair.snapshot_history.shape, 0.5)
    accuracy = HISTORY_FIELDS.index("validation_accuracy")
    history[:, :, accuracy] = [0.5, 0.95, 0.99]  # every network: 95 % after epoch 2
    history[0, :, accuracy] = [0.96, 0.97, 0.99]  # network 0 already after epoch 1
    history[1, :, accuracy] = [0.5, 0.6, 0.7]  # network 1 never
    at = pairs.at_accuracy(replace(pair, snapshot_history=history), 0.95)
    assert len(at.labels) == len(pair.labels) - 1 and at.metadata["epochs"].tolist()[:2] == [1, 2]
    np.testing.assert_array_equal(at.weights[0], pair.snapshots[0, 0])
    np.testing.assert_array_equal(at.weights[1], pair.snapshots[2, 1])
    assert at.metadata["validation_accuracy"][0] == 0.96
    unknown = replace(pair, snapshot_history=np.full(pair.snapshot_history.shape, np.nan))
    assert pairs.at_accuracy(unknown, 0.95) is None  # files before store format 4


def test_equal_progress_rows_compare_the_weights_where_each_network_reached_the_threshold(tmp_path):
    paths = write_synthetic(tmp_path, SyntheticConfig(networks=60, shift=0.5, seed=18, snapshot_epochs=(1, 2)))
    study = run_table2(Table2Config(tuple(paths), seeds=2, features=("raw",), classifiers=FAST_TWO, controls=(),
                                    equal_epochs=(), equal_accuracies=(0.3,)))  # fmt: skip
    (pair,) = study["pairs"]
    progress = pair["equal_progress_networks"]["acc0.3"]
    assert progress["DS1"] >= 10 and progress["DS2"] >= 10 and set(progress["epochs"]) == {"DS1", "DS2"}
    assert {"raw@acc0.3", "norm@acc0.3", "metadata@acc0.3"} <= set(pair["rows"])
    assert max(s["mean"] for s in pair["rows"]["raw@acc0.3"].values()) >= 0.9  # the planted shift, at any snapshot
    out = tmp_path / "table2.md"
    write_study(study, str(out))
    text = out.read_text()
    assert "first snapshot at validation accuracy ≥ 30%" in text and "At equal progress" in text
