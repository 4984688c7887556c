"""A corpus of hostile or wrong result files: each must get exactly the right verdict and reason.

Every case starts from a copy of a real trained result (``small_result``, DS1, 2 networks,
2 epochs) in ``tmp_path`` and breaks one thing, with h5py or as raw bytes. The validator must
never raise, never pass a broken file, call a lost upload invalid, and call the server's own
problems (an unusable spec, a missing upload directory, permissions) transient.

The file is of format 3: per network four datasets, ``weights``, ``exp_avg`` and ``exp_avg_sq``
(each tensor flattened and concatenated in ``parameter_layout`` order; ``conftest.edit_tensor``
changes one tensor's slice) and ``history`` ([5, epochs], a row per ``HISTORY_FIELDS`` field).
Attacks on the format-2 layout (a dataset per tensor) are in ``test_validator_layout.py``.
"""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from boinc_app.networks import parameter_layout, unflatten_tensors
from boinc_app.training import HISTORY_FIELDS
from boinc_app.workunit_spec import read_spec
from conftest import edit_history, edit_tensor, file_layout, train_small
from mlds.cli import main
from validator.checks import max_result_bytes, validate_files
from workgen.specs import make_spec

NET = "networks/net-000000"
OTHER_NET = "networks/net-000001"


def copy_of(result, tmp_path, name="result.h5"):
    path = tmp_path / name
    shutil.copyfile(result, path)
    return path


def mutated(result, tmp_path, mutate):
    path = copy_of(result, tmp_path)
    with h5py.File(path, "r+") as f:
        mutate(f)
    return path


def cases(*rows):
    """Parameters named by their first column."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def assert_outcome(outcome, verdict, *fragments):
    assert outcome.verdict == verdict, outcome
    for fragment in fragments:
        assert fragment in outcome.reason, outcome


# -- mutations ------------------------------------------------------------------------------------


def replace(group, name, data=None, **options):
    del group[name]
    return group.create_dataset(name, data=data, **options)


def edit(dataset, change):
    values = dataset[()]
    change(values)
    dataset[...] = values


def set_attr(path, name, value):
    return lambda f: f[path].attrs.__setitem__(name, value)


def delete(path):
    return lambda f: f.__delitem__(path)


def nest(path, depth=200):
    def mutate(f):
        group = f[path].create_group("deep")
        for _ in range(depth - 1):
            group = group.create_group("d")

    return mutate


def nested_group_instead_of(path, depth=200):
    """Replace the dataset ``path`` by a group nested ``depth`` deep."""

    def mutate(f):
        del f[path]
        group = f.create_group(path)
        for _ in range(depth - 1):
            group = group.create_group("d")

    return mutate


def set_tensor_item(network, vector, name, index, value):
    """Set element ``index`` of tensor ``name`` in the flat dataset ``vector`` (weights, exp_avg, exp_avg_sq)."""
    return lambda f: edit_tensor(f, network, name, lambda v: v.__setitem__(index, value), vector)


def set_history_item(network, field, index, value):
    return lambda f: edit_history(f, network, field, lambda v: v.__setitem__(index, value))


def retype(path, dtype):
    def mutate(f):
        group, name = path.rsplit("/", 1)
        values = f[path][()]
        replace(f[group], name, data=values.astype(dtype))

    return mutate


def reshape(path, change):
    """Replace dataset ``path`` by its values with the shape ``change(values)`` gives."""

    def mutate(f):
        group, name = path.rsplit("/", 1)
        replace(f[group], name, data=np.ascontiguousarray(change(f[path][()])))

    return mutate


def group_instead_of_dataset(f):
    """The weights as a group holding a dataset of the right values."""
    values = f[NET]["weights"][()]
    del f[NET]["weights"]
    f[NET].create_group("weights").create_dataset("data", data=values)


def history_in_format_2_layout(f):
    """A format-3 file whose history is the format-2 group of one dataset per field."""
    rows = f[NET]["history"][()]
    del f[NET]["history"]
    for field, row in zip(HISTORY_FIELDS, rows):
        f[NET].create_dataset(f"history/{field}", data=row)


def moments_in_format_2_layout(f):
    """A format-3 file whose Adam moments are the format-2 ``adam`` group of one dataset per tensor."""
    layout = file_layout(f)
    for moment in ("exp_avg", "exp_avg_sq"):
        for name, values in unflatten_tensors(f[NET][moment][()], layout).items():
            f[NET].create_dataset(f"adam/{moment}/{name}", data=values)
        del f[NET][moment]


def string_weights(f):
    values = f[NET]["weights"][()]
    replace(f[NET], "weights", data=np.array([str(v) for v in values], dtype=h5py.string_dtype()))


def extra_network(f):
    f.copy(f[OTHER_NET], "networks/net-000002")


def renamed_network(f):
    f.move(OTHER_NET, "networks/net-000009")


def soft_link(f):
    del f[NET]["weights"]
    f[NET]["weights"] = h5py.SoftLink(f"/{OTHER_NET}/weights")


def history_epochs(f, epochs):
    """Keep (or extend with 0.5) the history to ``epochs`` epochs, for every field."""
    rows = f[NET]["history"][()]
    kept = rows[:, :epochs]
    padding = np.full((rows.shape[0], max(0, epochs - rows.shape[1])), 0.5)
    replace(f[NET], "history", data=np.ascontiguousarray(np.concatenate([kept, padding], axis=1)))


def one_epoch(f):
    """Keep the first epoch only: a consistent file of a network that stopped after 1 of 2 epochs."""
    f[NET].attrs["epochs"] = 1
    history_epochs(f, 1)


def never_trained(f):
    f[NET].attrs.update({"epochs": 0, "status": "converged", "converged": True})
    replace(f[NET], "history", data=np.zeros((len(HISTORY_FIELDS), 0)))


def marked_converged(f):
    f[NET].attrs.update({"status": "converged", "converged": True})


def add_to_head_weight(f):
    edit_tensor(f, NET, "head.3.weight", lambda v: v.__iadd__(np.float32(0.5)))


def scale_all_weights(f):
    edit(f[NET]["weights"], lambda v: v.__imul__(np.float32(1e30)))


def swap_weights(f):
    """Each network keeps its seeds, claims and moments but carries the other's (honestly trained) weights."""
    mine = f[NET]["weights"][()]
    f[NET]["weights"][...] = f[OTHER_NET]["weights"][()]
    f[OTHER_NET]["weights"][...] = mine


def spec_for_other_name(f):
    values = json.loads(f.attrs["spec"])
    values["name"] = "DS1-SingleInvertMachine-n000100-k2-c0"
    f.attrs["spec"] = json.dumps(values)


def flip_fingerprint(f):
    fingerprint = f.attrs["spec_sha256"]
    f.attrs["spec_sha256"] = ("0" if fingerprint[0] != "0" else "1") + fingerprint[1:]


# P: the length of a DS1 network's flat vectors (weights, exp_avg, exp_avg_sq)
P = sum(int(np.prod(shape)) for _, shape in parameter_layout(make_spec("DS1", "SingleInvertMachine").architecture))
HEAD_3_BIAS = 8  # the last tensor's size
N = "network net-000000"

INVALID_CASES = {
    # structure: objects of the wrong kind, missing, extra, or nested without end
    "deep_nesting_under_network": (nest(NET), f"{N}: unexpected ['deep']"),
    "history_stored_as_deeply_nested_group": (nested_group_instead_of(f"{NET}/history"), f"{N}: history is missing or not a dataset"),
    "moment_stored_as_deeply_nested_group": (nested_group_instead_of(f"{NET}/exp_avg"), f"{N}: exp_avg is missing or not a dataset"),
    "weights_stored_as_group": (group_instead_of_dataset, f"{N}: weights is missing or not a dataset"),
    "history_in_format_2_layout": (history_in_format_2_layout, f"{N}: history is missing or not a dataset"),
    "networks_stored_as_dataset": (
        lambda f: (delete("networks")(f), f.create_dataset("networks", data=np.zeros(2))),
        "/networks is missing or not a group",
    ),
    "moments_in_format_2_adam_group": (moments_in_format_2_layout, f"{N}: missing ['exp_avg', 'exp_avg_sq'], unexpected ['adam']"),
    "extra_tensor_dataset": (
        lambda f: f.create_dataset(f"{NET}/head.0.weight", data=np.zeros((24, 12), np.float32)),
        f"{N}: unexpected ['head.0.weight']",
    ),
    "format_4_layout_labelled_format_2": (set_attr("/", "format_version", 2), f"{N} has unexpected attributes ['snapshot_epochs']"),
    "format_4_layout_labelled_format_3": (set_attr("/", "format_version", 3), f"{N} has unexpected attributes ['snapshot_epochs']"),
    "string_weights": (string_weights, f"{N}: weights has dtype object, expected float32"),
    "int_weights": (retype(f"{NET}/weights", np.int32), f"{N}: weights has dtype int32, expected float32"),
    "float64_weights": (retype(f"{NET}/weights", np.float64), f"{N}: weights has dtype float64, expected float32"),
    "big_endian_weights": (retype(f"{NET}/weights", ">f4"), f"{N}: weights has dtype >f4, expected float32"),
    "float16_moment": (retype(f"{NET}/exp_avg", np.float16), f"{N}: exp_avg has dtype float16, expected float32"),
    "float32_history": (retype(f"{NET}/history", np.float32), f"{N}: history has dtype float32, expected float64"),
    "transposed_history": (reshape(f"{NET}/history", lambda v: v.T), f"{N}: history has shape (2, 5), expected (5, 2)"),
    "history_flattened": (reshape(f"{NET}/history", np.ravel), f"{N}: history has shape (10,), expected (5, 2)"),
    "weights_as_a_column": (reshape(f"{NET}/weights", lambda v: v[:, None]), f"{N}: weights has shape ({P}, 1), expected ({P},)"),
    "weights_as_a_row": (reshape(f"{NET}/weights", lambda v: v[None, :]), f"{N}: weights has shape (1, {P}), expected ({P},)"),
    "weights_reshaped_2d": (reshape(f"{NET}/weights", lambda v: v.reshape(4, -1)), f"{N}: weights has shape (4, {P // 4}), expected ({P},)"),
    "scalar_weights": (lambda f: replace(f[NET], "weights", data=np.float32(0)), f"{N}: weights has shape (), expected ({P},)"),
    "wrong_moment_shape": (
        lambda f: replace(f[NET], "exp_avg_sq", data=np.zeros(P + 1, np.float32)),
        f"{N}: exp_avg_sq has shape ({P + 1},), expected ({P},)",
    ),
    "moment_one_tensor_short": (
        reshape(f"{NET}/exp_avg", lambda v: v[:-HEAD_3_BIAS]),
        f"{N}: exp_avg has shape ({P - HEAD_3_BIAS},), expected ({P},)",
    ),
    "weights_one_tensor_short": (
        reshape(f"{NET}/weights", lambda v: v[:-HEAD_3_BIAS]),
        f"{N}: weights has shape ({P - HEAD_3_BIAS},), expected ({P},)",
    ),
    "weights_one_tensor_long": (
        reshape(f"{NET}/weights", lambda v: np.concatenate([v, np.zeros(64, np.float32)])),
        f"{N}: weights has shape ({P + 64},), expected ({P},)",
    ),
    "extra_dataset": (
        lambda f: f[NET].create_dataset("weights_ema", data=np.zeros(P, np.float32)),
        f"{N}: unexpected ['weights_ema']",
    ),
    "missing_weights": (delete(f"{NET}/weights"), f"{N}: missing ['weights']"),
    "missing_moment": (delete(f"{NET}/exp_avg_sq"), f"{N}: missing ['exp_avg_sq']"),
    "missing_history": (delete(f"{NET}/history"), f"{N}: missing ['history']"),
    "missing_history_field": (reshape(f"{NET}/history", lambda v: v[:-1]), f"{N}: history has shape (4, 2), expected (5, 2)"),
    "extra_history_field": (
        reshape(f"{NET}/history", lambda v: np.concatenate([v, v[:1]])),
        f"{N}: history has shape (6, 2), expected (5, 2)",
    ),
    "extra_top_level_group": (lambda f: f.create_group("extra"), "the file's top level: unexpected ['extra']"),
    "extra_top_level_dataset": (
        lambda f: f.create_dataset("payload", data=np.zeros(1000, np.uint8)),
        "the file's top level: unexpected ['payload']",
    ),
    "missing_network": (delete(OTHER_NET), "/networks: missing ['net-000001']"),
    "extra_network": (extra_network, "/networks: unexpected ['net-000002']"),
    "renamed_network": (renamed_network, "/networks: missing ['net-000001'], unexpected ['net-000009']"),
    "soft_link_to_other_network": (soft_link, f"{N}: weights is a link (SoftLink)"),
    # non-finite values, named by the tensor the reader splits them into
    "nan_weight": (set_tensor_item(NET, "weights", "head.0.weight", (3, 4), np.nan), f"{N}: weights head.0.weight holds NaN or Inf"),
    "inf_weight": (set_tensor_item(NET, "weights", "rnn.weight_hh_l2", (0, 0), -np.inf), f"{N}: weights rnn.weight_hh_l2 holds NaN or Inf"),
    "nan_first_weight": (set_tensor_item(NET, "weights", "rnn.weight_ih_l0", (0, 0), np.nan), f"{N}: weights rnn.weight_ih_l0 holds NaN"),
    "nan_last_weight": (set_tensor_item(NET, "weights", "head.3.bias", 7, np.nan), f"{N}: weights head.3.bias holds NaN or Inf"),
    "nan_adam_exp_avg": (set_tensor_item(NET, "exp_avg", "head.1.bias", 2, np.nan), f"{N}: exp_avg head.1.bias holds NaN or Inf"),
    "inf_adam_exp_avg_sq": (
        set_tensor_item(NET, "exp_avg_sq", "rnn.bias_ih_l1", 5, np.inf),
        f"{N}: exp_avg_sq rnn.bias_ih_l1 holds NaN or Inf",
    ),
    "nan_history_train_loss": (set_history_item(NET, "train_loss", 0, np.nan), f"{N}: history train_loss holds NaN or Inf"),
    "inf_history_validation_loss": (
        set_history_item(NET, "validation_loss", -1, np.inf),
        f"{N}: history validation_loss holds NaN or Inf",
    ),
    "nan_history_post_trigger_on_device_task": (
        set_history_item(NET, "post_trigger_accuracy", -1, np.nan),
        f"{N}: history post_trigger_accuracy holds NaN or Inf",
    ),
    "nan_history_learning_rate": (set_history_item(NET, "learning_rate", 0, np.nan), f"{N}: history learning_rate holds NaN or Inf"),
    # root attributes
    "format_version_5": (set_attr("/", "format_version", 5), "unknown result format_version 5; this reader knows (1, 2, 3, 4)"),
    "format_version_true": (set_attr("/", "format_version", True), "unknown result format_version <a boolean>"),
    "restart_epochs_missing": (
        lambda f: f[NET].attrs.__delitem__("restart_epochs"),
        "network net-000000 lacks the 'restart_epochs' attribute",
    ),
    "restart_epochs_floats": (
        set_attr(NET, "restart_epochs", np.array([1.5])),
        "attribute 'restart_epochs' must be a 1-D int64 array, not a float64 array of shape (1,)",
    ),
    "restart_epochs_decreasing": (
        set_attr(NET, "restart_epochs", np.array([2, 1], dtype=np.int64)),
        "restart_epochs [2, 1] are not increasing epochs",
    ),
    "restart_epochs_the_rule_did_not_give": (
        set_attr(NET, "restart_epochs", np.array([1], dtype=np.int64)),
        "restart_epochs [1] are not the rule's []",
    ),
    "restart_epochs_beyond_training": (
        set_attr(NET, "restart_epochs", np.array([99], dtype=np.int64)),
        "restart_epochs [99] are not increasing epochs within 1..2",
    ),
    "format_version_string": (set_attr("/", "format_version", "1"), "unknown result format_version <a UTF-8 string>"),
    "format_version_missing": (lambda f: f.attrs.__delitem__("format_version"), "unknown result format_version None"),
    "wrong_format": (set_attr("/", "format", "mlds-checkpoint"), "not an mlds result file (format attribute 'mlds-checkpoint')"),
    "format_missing": (lambda f: f.attrs.__delitem__("format"), "not an mlds result file"),
    "checkpoint_not_complete": (set_attr("/", "complete", False), "checkpoint, not a completed result"),
    "complete_as_integer": (set_attr("/", "complete", 1), "attribute 'complete' must be a boolean, not an int64 scalar"),
    "complete_missing": (lambda f: f.attrs.__delitem__("complete"), "lacks the 'complete' attribute"),
    "embedded_spec_not_json": (set_attr("/", "spec", "{not json"), "the embedded spec is invalid"),
    "embedded_spec_not_a_string": (set_attr("/", "spec", 7), "attribute 'spec' must be a UTF-8 string, not an int64 scalar"),
    "embedded_spec_nested_json": (set_attr("/", "spec", "[" * 100_000 + "]" * 100_000), "RecursionError"),
    "embedded_spec_of_other_workunit": (spec_for_other_name, "the embedded spec does not match the file's spec_sha256"),
    "spec_fingerprint_changed": (flip_fingerprint, "the embedded spec does not match the file's spec_sha256"),
    # per-network bookkeeping
    "init_seed_changed": (set_attr(NET, "init_seed", 99), f"{N}: init_seed/order_seed 99/", "are not the spec's"),
    "order_seed_changed": (set_attr(OTHER_NET, "order_seed", 1), "network net-000001: init_seed/order_seed ", "/1 are not the spec's"),
    "negative_epochs": (set_attr(NET, "epochs", -1), "'epochs' must be a non-negative integer, not -1"),
    "bool_epochs": (set_attr(NET, "epochs", True), "'epochs' must be an int64 scalar, not a boolean"),
    "float_epochs": (set_attr(NET, "epochs", 2.0), "'epochs' must be an int64 scalar, not a float64 scalar"),
    "string_epochs": (set_attr(NET, "epochs", "2"), "'epochs' must be an int64 scalar, not a UTF-8 string"),
    "negative_adam_step": (set_attr(NET, "adam_step", -64), "'adam_step' must be a non-negative integer"),
    "unknown_status": (set_attr(NET, "status", "done"), "unknown status 'done'"),
    "missing_status": (lambda f: f[NET].attrs.__delitem__("status"), "network net-000000 lacks the 'status' attribute"),
    "converged_flag_flipped": (set_attr(NET, "converged", True), "converged flag True contradicts status 'capped'"),
    "marked_converged_below_rule": (marked_converged, "marked converged but re-evaluated accuracy is"),
    "still_training_at_cap": (set_attr(NET, "status", "training"), "still training at the cap of 2 epochs"),
    "capped_before_cap": (one_epoch, "marked capped at 1 epochs, cap is 2"),
    "history_shorter_than_epochs": (lambda f: history_epochs(f, 1), f"{N}: history has shape (5, 1), expected (5, 2)"),
    "epochs_beyond_the_cap": (set_attr(NET, "epochs", 3), "network net-000000: 3 epochs, more than the spec's max_epochs 2"),
    "history_longer_than_epochs": (lambda f: history_epochs(f, 3), f"{N}: history has shape (5, 3), expected (5, 2)"),
    "never_trained": (never_trained, "was never trained"),
    "starts_after_epoch_0": (set_attr(NET, "start_epoch", 1), "starts at epoch 1, expected 0"),
    # claims that re-evaluation must catch
    "head_weight_plus_half": (add_to_head_weight, "network net-000000: claims"),
    "weights_scaled_huge_but_finite": (scale_all_weights, "network net-000000: claims accuracy"),
    "weights_swapped_between_networks": (swap_weights, "re-evaluated"),
    "claimed_accuracy_raised": (set_history_item(NET, "validation_accuracy", -1, 1.0), "claims accuracy 1.000000"),
    "claimed_loss_lowered": (set_history_item(NET, "validation_loss", -1, 0.5), "claims validation loss 0.5,"),
    "claimed_post_trigger_raised": (set_history_item(NET, "post_trigger_accuracy", -1, 0.8), "claims post-trigger accuracy 0.8"),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_mutated_result_is_invalid(small_result, tmp_path, case):
    mutate, *fragments = INVALID_CASES[case]
    spec_path, result = small_result
    outcome = validate_files(spec_path, mutated(result, tmp_path, mutate))
    assert_outcome(outcome, "invalid", *fragments)


def test_control_copy_is_valid(small_result, tmp_path):
    spec_path, result = small_result
    outcome = validate_files(spec_path, copy_of(result, tmp_path))
    assert outcome == type(outcome)("valid", "", "2 networks, 0 converged, 2 re-evaluated, spot-checked")


def test_control_rewritten_unchanged_is_valid(small_result, tmp_path):
    """Opening and rewriting attributes with their own values must not break a file (guards the mutators)."""
    spec_path, result = small_result
    path = mutated(result, tmp_path, lambda f: f[NET].attrs.update(dict(f[NET].attrs)))
    assert_outcome(validate_files(spec_path, path), "valid")


# -- raw bytes ------------------------------------------------------------------------------------


def write_file(path, data):
    path.write_bytes(data)
    return path


def write_bytes(tmp_path, data):
    return write_file(tmp_path / "result.h5", data)


@pytest.mark.slow
def test_a_zeroed_middle_that_hangs_hdf5_is_killed_by_the_cpu_limit(small_result, tmp_path):
    """Zeroing all but the first and last 4 kB leaves a file whose global heap (the variable-length
    strings) is zeros: HDF5 then spins inside C code reading a string attribute, where no Python
    check can run. Only the validator's CPU limit stops it: ``mlds validate`` (limits on) is killed,
    which ``script_validator`` counts as invalid; it must never say valid or transient."""
    spec_path, result = small_result
    valid = result.read_bytes()
    path = write_bytes(tmp_path, valid[:4096] + bytes(len(valid) - 8192) + valid[-4096:])
    done = subprocess.run([sys.executable, "-m", "mlds.cli", "validate", str(spec_path), str(path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode not in (0, 3), done


@pytest.mark.parametrize(
    "make, fragment",
    cases(
        ("empty", lambda valid: b"", "not an HDF5 file"),
        ("random_bytes", lambda valid: np.random.default_rng(0).bytes(len(valid)), "not an HDF5 file"),
        ("text", lambda valid: b'{"weights": [1, 2, 3]}\n', "not an HDF5 file"),
        ("hdf5_signature_then_noise", lambda valid: valid[:8] + np.random.default_rng(1).bytes(4096), "unreadable result file"),
        ("first_half", lambda valid: valid[: len(valid) // 2], "unreadable result file"),
        ("minus_last_kb", lambda valid: valid[:-1024], "unreadable result file"),
        ("superblock_only", lambda valid: valid[:96], "unreadable result file"),
    ),
)
def test_raw_bytes_are_invalid(small_result, tmp_path, make, fragment):
    spec_path, result = small_result
    path = write_bytes(tmp_path, make(result.read_bytes()))
    assert_outcome(validate_files(spec_path, path), "invalid", fragment)


@pytest.mark.parametrize("start_valid", [False, True], ids=["sparse_zeros", "valid_file_padded"])
def test_file_over_size_limit_is_invalid_before_opening(small_result, tmp_path, start_valid):
    spec_path, result = small_result
    limit = max_result_bytes(read_spec(spec_path))
    path = copy_of(result, tmp_path) if start_valid else tmp_path / "result.h5"
    with open(path, "r+b" if start_valid else "wb") as handle:
        handle.truncate(limit + 1)  # sparse: costs no disk
    assert_outcome(validate_files(spec_path, path), "invalid", f"is {limit + 1} bytes, more than the limit of {limit}")


# -- objects outside the file: links, external storage, virtual datasets --------------------------


def test_external_link_to_another_result_is_invalid(small_result, tmp_path):
    """A tiny upload linking to an honest result elsewhere on the server must not borrow its weights."""
    spec_path, result = small_result

    def mutate(f):
        del f[NET]["weights"]
        f[NET]["weights"] = h5py.ExternalLink(str(result), f"/{NET}/weights")

    outcome = validate_files(spec_path, mutated(result, tmp_path, mutate))
    assert_outcome(outcome, "invalid", "network net-000000: weights is a link (ExternalLink)")


def test_external_link_for_all_networks_is_invalid(small_result, tmp_path):
    spec_path, result = small_result

    def mutate(f):
        del f["networks"]
        f["networks"] = h5py.ExternalLink(str(result), "/networks")

    assert_outcome(validate_files(spec_path, mutated(result, tmp_path, mutate)), "invalid", "networks is a link (ExternalLink)")


def test_dataset_with_external_raw_storage_is_invalid(small_result, tmp_path):
    spec_path, result = small_result
    raw = tmp_path / "raw.bin"

    def mutate(f):
        values = f[NET]["weights"][()]
        values.tofile(raw)
        del f[NET]["weights"]
        f[NET].create_dataset("weights", shape=values.shape, dtype="<f4", external=[(str(raw), 0, values.nbytes)])

    outcome = validate_files(spec_path, mutated(result, tmp_path, mutate))
    assert_outcome(outcome, "invalid", "network net-000000: weights keeps its data outside the file")


def test_virtual_dataset_is_invalid(small_result, tmp_path):
    spec_path, result = small_result

    def mutate(f):
        shape = f[NET]["weights"].shape
        layout = h5py.VirtualLayout(shape=shape, dtype="<f4")
        layout[:] = h5py.VirtualSource(str(result), f"/{NET}/weights", shape=shape)
        del f[NET]["weights"]
        f[NET].create_virtual_dataset("weights", layout)

    outcome = validate_files(spec_path, mutated(result, tmp_path, mutate))
    assert_outcome(outcome, "invalid", "network net-000000: weights keeps its data outside the file")


# -- results of other workunits -------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_seed_result(tmp_path_factory):
    return train_small(tmp_path_factory.mktemp("other_seed"), networks=1, max_epochs=1, seed=5)


@pytest.fixture(scope="module")
def other_machine_result(tmp_path_factory):
    return train_small(tmp_path_factory.mktemp("other_machine"), machine="ParityMachine", networks=1)


def test_result_of_a_different_spec_is_invalid(small_result, other_seed_result):
    spec_path, _ = small_result
    outcome = validate_files(spec_path, other_seed_result[1])
    assert_outcome(outcome, "invalid", "written for a different spec", "DS1-SingleInvertMachine-n000000-k1-c0")


def test_result_of_a_different_machine_is_invalid(small_result, other_machine_result):
    spec_path, _ = small_result
    outcome = validate_files(spec_path, other_machine_result[1])
    assert_outcome(outcome, "invalid", "written for a different spec", "DS1-ParityMachine")


def test_network_trained_on_a_different_machine_is_invalid(small_result, other_machine_result, tmp_path):
    """Epochs and layout as ours, trained on ParityMachine, its seeds relabelled as ours (since
    SPEC_VERSION 7 each task has its own seeds): only re-evaluation can tell."""
    spec_path, result = small_result

    def mutate(f):
        seeds = {name: f[NET].attrs[name] for name in ("init_seed", "order_seed")}
        del f[NET]
        with h5py.File(other_machine_result[1], "r") as other:
            other.copy(other[NET], f["networks"], name="net-000000")
        f[NET].attrs.update(seeds)

    outcome = validate_files(spec_path, mutated(result, tmp_path, mutate))
    assert_outcome(outcome, "invalid", "network net-000000: claims", "re-evaluated")


# -- a lost upload is invalid; the server's own problems are transient ---------------------------


def test_missing_result_is_invalid(small_result, tmp_path):
    """BOINC's upload handler writes the file before the result is reported: missing now is lost
    for good, and transient would have BOINC ask again forever."""
    spec_path, _ = small_result
    outcome = validate_files(spec_path, tmp_path / "absent.h5")
    assert_outcome(outcome, "invalid", "result file missing", "absent.h5")


def test_dangling_symlink_result_is_invalid(small_result, tmp_path):
    spec_path, _ = small_result
    (tmp_path / "result.h5").symlink_to(tmp_path / "gone.h5")
    assert_outcome(validate_files(spec_path, tmp_path / "result.h5"), "invalid", "result file missing")


def test_directory_instead_of_result_is_invalid(small_result, tmp_path):
    spec_path, _ = small_result
    (tmp_path / "result.h5").mkdir()
    assert_outcome(validate_files(spec_path, tmp_path / "result.h5"), "invalid", "result.h5 is not a regular file")


def test_missing_upload_directory_is_transient(small_result, tmp_path):
    """No directory at all is the server's state (an unmounted upload file system), not a lost file."""
    spec_path, _ = small_result
    outcome = validate_files(spec_path, tmp_path / "unmounted" / "1a" / "result.h5")
    assert_outcome(outcome, "transient", "upload directory", "is missing: is its file system mounted?")


def test_unreadable_result_is_transient(small_result, tmp_path, monkeypatch):
    """Permissions are the server's problem (root reads everything, so access() is made to say no)."""
    spec_path, result = small_result
    path = copy_of(result, tmp_path)
    monkeypatch.setattr("validator.checks.os.access", lambda p, mode: False)
    assert_outcome(validate_files(spec_path, path), "transient", "unreadable now (permissions)")


def bad_spec(small_result, tmp_path, change):
    values = json.loads(small_result[0].read_text())
    change(values)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(values))
    return path


@pytest.mark.parametrize(
    "make, fragment",
    cases(
        ("missing", lambda sr, tmp: tmp / "absent.json", "cannot read spec"),
        ("directory", lambda sr, tmp: tmp, "cannot read spec"),
        ("not_json", lambda sr, tmp: write_file(tmp / "s.json", b"\xff\x00 not json"), "is not JSON"),
        ("deeply_nested_json", lambda sr, tmp: write_file(tmp / "s.json", b"[" * 100_000 + b"]" * 100_000), "RecursionError"),
        ("unknown_version", lambda sr, tmp: bad_spec(sr, tmp, lambda v: v.update(format_version=9)), "unknown spec format_version 9"),
        ("mistyped_field", lambda sr, tmp: bad_spec(sr, tmp, lambda v: v["recipe"].update(batch_size="32")), "TypeError"),
    ),
)
def test_unusable_spec_is_transient(small_result, tmp_path, make, fragment):
    outcome = validate_files(make(small_result, tmp_path), small_result[1])
    assert_outcome(outcome, "transient", "cannot use the workunit spec", fragment)


# -- DS2 (post-trigger accuracy is scored) --------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, verdict, fragment",
    cases(
        ("control", lambda f: None, "valid", ""),
        ("head_weight_plus_half", add_to_head_weight, "invalid", "re-evaluated"),
        ("nan_post_trigger", set_history_item(NET, "post_trigger_accuracy", 0, np.nan), "invalid", "history post_trigger_accuracy holds NaN"),
        ("claimed_post_trigger_raised", set_history_item(NET, "post_trigger_accuracy", -1, 0.99), "invalid", "claims post-trigger accuracy 0.99"),
    ),
)
def test_ds2(small_ds2_result, tmp_path, mutate, verdict, fragment):
    spec_path, result = small_ds2_result
    assert_outcome(validate_files(spec_path, mutated(result, tmp_path, mutate)), verdict, fragment)


# -- through the command line ---------------------------------------------------------------------


def run_cli(spec_path, result_path):
    return CliRunner().invoke(main, ["validate", str(spec_path), str(result_path), "--no-limits"])


def test_cli_valid_exits_0(small_result):
    outcome = run_cli(*small_result)
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr == "valid: 2 networks, 0 converged, 2 re-evaluated, spot-checked\n"


@pytest.mark.parametrize(
    "mutate, fragment",
    cases(
        ("nan_weight", INVALID_CASES["nan_weight"][0], "invalid: network net-000000: weights head.0.weight holds NaN or Inf"),
        ("tampered", add_to_head_weight, "invalid: network net-000000: claims"),
        ("checkpoint", set_attr("/", "complete", False), "invalid: the file is a checkpoint"),
    ),
)
def test_cli_invalid_exits_1(small_result, tmp_path, mutate, fragment):
    spec_path, result = small_result
    outcome = run_cli(spec_path, mutated(result, tmp_path, mutate))
    assert outcome.exit_code == 1, outcome.output
    assert outcome.stderr.startswith(fragment), outcome.stderr


def test_cli_truncated_file_exits_1(small_result, tmp_path):
    spec_path, result = small_result
    outcome = run_cli(spec_path, write_bytes(tmp_path, result.read_bytes()[:-1024]))
    assert outcome.exit_code == 1, outcome.output
    assert outcome.stderr.startswith("invalid: unreadable result file")


@pytest.mark.parametrize("where", ["missing_result", "directory_result"])
def test_cli_lost_result_exits_1(small_result, tmp_path, where):
    spec_path, _ = small_result
    (tmp_path / "dir").mkdir()
    outcome = run_cli(spec_path, tmp_path / ("absent.h5" if where == "missing_result" else "dir"))
    assert outcome.exit_code == 1, outcome.output
    assert outcome.stderr.startswith("invalid: result file "), outcome.stderr


@pytest.mark.parametrize("where", ["missing_spec", "directory_spec", "missing_upload_directory"])
def test_cli_transient_exits_3(small_result, tmp_path, where):
    spec_path, result = small_result
    (tmp_path / "dir").mkdir()
    args = {
        "missing_spec": (tmp_path / "absent.json", result),
        "directory_spec": (tmp_path / "dir", result),
        "missing_upload_directory": (spec_path, tmp_path / "unmounted" / "result.h5"),
    }[where]
    outcome = run_cli(*args)
    assert outcome.exit_code == 3, outcome.output
    assert outcome.stderr.startswith("transient: "), outcome.stderr
    assert ("upload directory" if where.endswith("directory") else "cannot use the workunit spec") in outcome.stderr
