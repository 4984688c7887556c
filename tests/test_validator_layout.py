"""Hostile layouts: files that are small on disk but expensive or misleading to read.

The reader must refuse them from their layout, before reading any data: compression bombs (a
tiny gzip chunk that inflates to a gigabyte), filters of any kind, chunked and resizable datasets,
compact storage, declared shapes without storage, objects linked twice, extra attributes and
objects, attribute bombs, wrong byte orders and types, deep nesting. Where the point is the cost,
the validator runs in a child process that reports the growth of its peak resident memory, and a
control in the same child shows that reading the file naively really does cost that memory. The
peak is Linux's high-water mark of resident memory, reset just before each measured call.

The attacks target format 3 (four datasets per network: flat ``weights``, ``exp_avg``,
``exp_avg_sq`` and a [5, epochs] ``history``); the last section rewrites a result in the format-2
layout (a dataset per tensor, ``tests.conftest.write_format_2``), checks that format-2 and format-1
files are still read and valid, and that attacks on that layout are still refused.
"""

import json
import subprocess
import sys
import zlib

import h5py
import numpy as np
import pytest

from boinc_app.result_file import ResultFileError, read_result
from tests.conftest import write_format_2
from tests.test_validator_hostile import P, mutated
from validator.checks import validate_files

NET = "networks/net-000000"
N = "network net-000000"
MB = 1 << 20

def assert_invalid(outcome, *fragments):
    assert outcome.verdict == "invalid", outcome
    for fragment in fragments:
        assert fragment in outcome.reason, outcome


def gzip_bomb(f, path, elements):
    """Store ``path``'s honest values as the start of one gzip chunk of ``elements`` float32: reading
    the few thousand values inflates the whole chunk. Written chunk by chunk, so making it costs ~1 MB."""
    values = f[path][()]
    packer = zlib.compressobj(9)
    block = bytes(MB)
    parts = [packer.compress(values.astype("<f4").tobytes() + block[values.nbytes :])]
    parts += [packer.compress(block) for _ in range(elements * 4 // MB - 1)]
    payload = b"".join(parts) + packer.flush()
    group, name = path.rsplit("/", 1)
    del f[path]
    dataset = f[group].create_dataset(
        name, shape=values.shape, maxshape=(None,), chunks=(elements,), dtype="<f4", compression="gzip"
    )
    dataset.id.write_direct_chunk((0,), payload, 0)


# Peak memory of one call in a child process: Linux's high-water mark of resident memory (VmHWM),
# reset just before the call (clear_refs 5), so that a peak of the imports cannot hide the call's.
MEASURE = """
import json, resource, sys

def _status(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":"))

def grown(action):
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        start = _status("VmRSS")
        value = action()
        return value, _status("VmHWM") - start
    except OSError:  # not Linux: the peak since the process started
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        value = action()
        return value, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start
"""

PEAK_SCRIPT = MEASURE + """
from validator.checks import validate_files
import h5py
spec, result, control = sys.argv[1:4]
outcome, validation = grown(lambda: validate_files(spec, result))

def read_naively():
    with h5py.File(result, "r") as f:
        return f[control][()].nbytes

_, read = grown(read_naively) if control else (0, 0)
print(json.dumps({"verdict": outcome.verdict, "reason": outcome.reason, "validation": validation, "control": read}))
"""


def peak_memory(spec_path, path, control=""):
    """Verdict, reason and peak memory growth (bytes) of validating ``path`` in a fresh process,
    and of then reading dataset ``control`` naively (0 if none)."""
    command = [sys.executable, "-c", PEAK_SCRIPT, str(spec_path), str(path), control]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- compression bombs and filters ----------------------------------------------------------------


def test_compression_bomb_is_refused_before_inflating(small_result, tmp_path):
    spec_path, result = small_result
    elements = 1 << 26  # 256 MiB inflated, 256 kB on disk
    path = mutated(result, tmp_path, lambda f: gzip_bomb(f, f"{NET}/weights", elements))
    assert path.stat().st_size < result.stat().st_size + MB
    measured = peak_memory(spec_path, path, control=f"{NET}/weights")
    assert measured["verdict"] == "invalid", measured
    assert f"{N}: weights is stored chunked with filters ['deflate']" in measured["reason"]
    assert measured["control"] > 64 * MB, measured  # the bomb is real (measured ~250 MB)
    assert measured["validation"] < 32 * MB, measured


FILTERS = {
    "gzip": {"compression": "gzip"},
    "lzf": {"compression": "lzf"},
    "shuffle": {"shuffle": True},
    "fletcher32": {"fletcher32": True},
    "scaleoffset": {"scaleoffset": 4},
}
if "szip" in h5py.filters.encode:
    FILTERS["szip"] = {"compression": "szip"}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_any_filter_is_refused(small_result, tmp_path, name):
    def mutate(f):
        values = f[NET]["exp_avg"][()]
        del f[NET]["exp_avg"]
        f[NET].create_dataset("exp_avg", data=values, chunks=values.shape, **FILTERS[name])

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, f"{N}: exp_avg is stored chunked with filters [", "results are contiguous and unfiltered")


@pytest.mark.parametrize(
    "name, chunks, maxshape",
    [("weights", (64,), None), ("weights", (64,), (None,)), ("history", (1, 1), (5, None))],
    ids=["chunked", "resizable", "resizable_history"],
)
def test_chunked_or_resizable_dataset_is_refused(small_result, tmp_path, name, chunks, maxshape):
    def mutate(f):
        values = f[NET][name][()]
        del f[NET][name]
        f[NET].create_dataset(name, data=values, chunks=chunks, maxshape=maxshape)

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, f"{N}: {name} is stored chunked; results are contiguous")


def compact_dataset(group, name, values):
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple(values.shape)
    htype = h5py.h5t.IEEE_F64LE if values.dtype == np.float64 else h5py.h5t.IEEE_F32LE
    dataset = h5py.h5d.create(group.id, name.encode(), htype, space, dcpl=plist)
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, values)


@pytest.mark.parametrize("name", ["exp_avg_sq", "history"])
def test_compact_dataset_is_refused(small_result, tmp_path, name):
    def mutate(f):
        values = f[NET][name][()]
        del f[NET][name]
        compact_dataset(f[NET], name, values)

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, f"{N}: {name} is stored compact")


# -- declared shapes without storage --------------------------------------------------------------


def test_unallocated_tensor_is_refused(small_result, tmp_path):
    """Right shape and dtype, no storage: it would read as fill values."""

    def mutate(f):
        del f[NET]["weights"]
        f[NET].create_dataset("weights", shape=(P,), dtype="<f4")

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, f"{N}: weights stores 0 bytes at offset None for {4 * P} bytes")


def huge_history(f):
    """2^40 epochs claimed, and a history of that length that has no storage (40 TB of fill values)."""
    f[NET].attrs["epochs"] = 2**40
    del f[NET]["history"]
    f[NET].create_dataset("history", shape=(5, 2**40), dtype="<f8")


def test_huge_declared_history_is_refused_cheaply(small_result, tmp_path):
    spec_path, result = small_result
    measured = peak_memory(spec_path, mutated(result, tmp_path, huge_history))
    assert measured["verdict"] == "invalid", measured
    assert "1099511627776 epochs, more than the spec's max_epochs 2" in measured["reason"]
    assert measured["validation"] < 32 * MB, measured


@pytest.mark.parametrize(
    "name, shape, expected",
    [("weights", (2**40,), (P,)), ("exp_avg_sq", (2**20, 2**20), (P,)), ("history", (5, 2**40), (5, 2))],
    ids=["weights", "moment", "history"],
)
def test_huge_declared_shape_is_refused(small_result, tmp_path, name, shape, expected):
    def mutate(f):
        del f[NET][name]
        f[NET].create_dataset(name, shape=shape, dtype="<f8" if name == "history" else "<f4")

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, f"{N}: {name} has shape {shape}, expected {expected}")


# -- objects linked twice, extra attributes and objects --------------------------------------------


@pytest.mark.parametrize(
    "target, source, fragment",
    [
        ("networks/net-000001/weights", f"{NET}/weights", "network net-000001: weights is the same stored object as network net-000000: weights"),
        ("networks/net-000001/history", f"{NET}/history", "network net-000001: history is the same stored object as network net-000000: history"),
        (f"{NET}/exp_avg_sq", f"{NET}/exp_avg", f"{N}: exp_avg_sq is the same stored object as {N}: exp_avg"),
        ("networks/net-000001", NET, "network net-000001 is the same stored object as network net-000000"),
    ],
    ids=["weights_of_another_network", "history_of_another_network", "moment_as_the_other_moment", "whole_network"],
)
def test_object_hard_linked_twice_is_refused(small_result, tmp_path, target, source, fragment):
    """A hard link is not a link to refuse by its kind: the object it names is shared."""

    def mutate(f):
        del f[target]
        f[target] = f[source]

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, fragment)


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("/", "the file has unexpected attributes ['extra']"),
        (NET, "network net-000000 has unexpected attributes ['extra']"),
        ("networks", "/networks has attributes ['extra'], expected none"),
        (f"{NET}/history", "network net-000000: history has attributes ['extra'], expected none"),
        (f"{NET}/exp_avg", "network net-000000: exp_avg has attributes ['extra'], expected none"),
        (f"{NET}/exp_avg_sq", "network net-000000: exp_avg_sq has attributes ['extra'], expected none"),
        (f"{NET}/weights", "network net-000000: weights has attributes ['extra'], expected none"),
    ],
)
def test_extra_attribute_is_refused(small_result, tmp_path, path, fragment):
    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, lambda f: f[path].attrs.__setitem__("extra", 1)))
    assert_invalid(outcome, fragment)


def test_committed_datatype_is_refused(small_result, tmp_path):
    def mutate(f):
        f["float"] = np.dtype("<f4")
        values = f[NET]["weights"][()]
        del f[NET]["weights"]
        f[NET].create_dataset("weights", data=values, dtype=f["float"])

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "the file's top level: unexpected ['float']")
    with h5py.File(tmp_path / "result.h5", "r+") as f:
        del f["float"]  # the dataset keeps its committed type
    assert_invalid(validate_files(small_result[0], tmp_path / "result.h5"), f"{N}: weights has a committed (named, shared) datatype")


@pytest.mark.parametrize(
    "count, fragments",
    [(100, ("network net-000000 has 110 attributes, expected 10",)),
     (5000, ("network net-000000 has ", " bytes of object header, attributes and links"))],
)  # fmt: skip
def test_many_attributes_are_refused_before_listing(small_result, tmp_path, count, fragments):
    def mutate(f):
        for i in range(count):
            f[NET].attrs[f"a{i}"] = i

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, *fragments)


@pytest.mark.parametrize(
    "count, fragments",
    [(100, ("network net-000000 holds 105 objects, expected 5",)),
     (5000, ("network net-000000 has ", " bytes of object header, attributes and links"))],
)  # fmt: skip
def test_many_members_are_refused_before_listing(small_result, tmp_path, count, fragments):
    def mutate(f):
        for i in range(count):
            f[NET][f"h{i}"] = h5py.SoftLink("/nowhere")

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, *fragments)


def nest(depth):
    def mutate(f):
        group = f.create_group("deep")
        for _ in range(depth):
            group = group.create_group("d")

    return mutate


def test_deeply_nested_groups_are_refused(small_result, tmp_path):
    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, nest(500)))
    assert_invalid(outcome, "the file's top level: unexpected ['deep']")


def test_deeply_nested_groups_are_not_visited_without_a_size_limit(small_result, tmp_path):
    with pytest.raises(ResultFileError, match=r"the file's top level: unexpected \['deep'\]"):
        read_result(mutated(small_result[1], tmp_path, nest(5000)))


# -- attribute bombs -------------------------------------------------------------------------------


def test_100_mb_attribute_is_refused_by_the_size_limit_before_opening(small_result, tmp_path):
    spec_path, result = small_result
    path = mutated(result, tmp_path, lambda f: f.attrs.__setitem__("bomb", np.zeros(100 * MB, np.uint8)))
    measured = peak_memory(spec_path, path)
    assert measured["verdict"] == "invalid", measured
    assert "more than the limit of" in measured["reason"]
    assert measured["validation"] < 16 * MB, measured


ATTRIBUTE_BOMB_SCRIPT = MEASURE + """
from boinc_app.result_file import ResultFileError, read_result

def read():
    try:
        read_result(sys.argv[1])
    except ResultFileError as exc:
        return str(exc)

reason, read_grown = grown(read)
print(json.dumps({"reason": reason, "grown": read_grown}))
"""


@pytest.mark.parametrize(
    "where, name, fragment",
    [
        ("/", "bomb", "the file has 1048"),
        (NET, "restart_epochs", "network net-000000 has 1048"),
        (NET, "cpu_seconds", "network net-000000 has 1048"),
    ],
)
def test_100_mb_attribute_is_refused_before_reading_without_a_size_limit(small_result, tmp_path, where, name, fragment):
    """Read as the trainer and assimilator read (no size limit): refused from the size of the
    object's attribute storage, before listing attributes (which reads every value, twice)."""
    dtype = np.int64 if name == "restart_epochs" else np.float64
    bomb = np.zeros(100 * MB // 8, dtype)
    path = mutated(small_result[1], tmp_path, lambda f: f[where].attrs.__setitem__(name, bomb))
    done = subprocess.run([sys.executable, "-c", ATTRIBUTE_BOMB_SCRIPT, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    assert fragment in (measured["reason"] or ""), measured
    assert "bytes of object header, attributes and links, more than" in measured["reason"]
    assert measured["grown"] < 32 * MB, measured


def test_long_string_attribute_is_refused(small_result, tmp_path):
    path = mutated(small_result[1], tmp_path, lambda f: f.attrs.__setitem__("device", "x" * 5000))
    with pytest.raises(ResultFileError, match="attribute 'device' is 5000 characters long"):
        read_result(path)


# -- byte orders and types -------------------------------------------------------------------------


def retype(path, dtype):
    def mutate(f):
        group, name = path.rsplit("/", 1)
        values = f[path][()]
        del f[path]
        f[group].create_dataset(name, data=values.astype(dtype))

    return mutate


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        pytest.param(
            retype(f"{NET}/history", ">f8"), f"{N}: history has dtype >f8, expected float64", id="big_endian_history"
        ),
        pytest.param(retype(f"{NET}/exp_avg_sq", ">f4"), f"{N}: exp_avg_sq has dtype >f4, expected float32", id="big_endian_moment"),
        pytest.param(retype(f"{NET}/weights", np.float16), f"{N}: weights has dtype float16, expected float32", id="float16_weight"),
        pytest.param(
            lambda f: f[NET].attrs.__setitem__("epochs", np.array(2, dtype=">i8")),
            "attribute 'epochs' must be an int64 scalar, not a >i8 scalar",
            id="big_endian_attribute",
        ),
        pytest.param(
            lambda f: f[NET].attrs.__setitem__("epochs", np.int32(2)),
            "attribute 'epochs' must be an int64 scalar, not a int32 scalar",
            id="int32_attribute",
        ),
        pytest.param(
            lambda f: f[NET].attrs.__setitem__("status", np.bytes_(b"capped")),
            "attribute 'status' must be a UTF-8 string, not a |S6 scalar",
            id="fixed_length_string_attribute",
        ),
        pytest.param(
            lambda f: f[NET].attrs.create("status", "capped", dtype=h5py.string_dtype("ascii")),
            "attribute 'status' must be a UTF-8 string, not an ASCII string",
            id="ascii_string_attribute",
        ),
        pytest.param(
            lambda f: f.attrs.__setitem__("app_version", ["0.1.0"]),
            "attribute 'app_version' must be a UTF-8 string, not a object array of shape (1,)",
            id="string_array_attribute",
        ),
        pytest.param(
            lambda f: f[NET].attrs.__setitem__("converged", h5py.Empty("i1")),
            "attribute 'converged' must be a boolean, not empty (a null dataspace)",
            id="empty_attribute",
        ),
    ],
)
def test_wrong_byte_order_or_type_is_refused(small_result, tmp_path, mutate, fragment):
    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, fragment)


def test_truncated_file_is_refused(small_result, tmp_path):
    path = tmp_path / "result.h5"
    data = small_result[1].read_bytes()
    path.write_bytes(data[: len(data) - 64])
    assert_invalid(validate_files(small_result[0], path), "unreadable result file")


def test_honest_result_reads_with_all_checks(small_result):
    """The control: the trainer's own output passes every layout check."""
    spec, state, attrs = read_result(small_result[1])
    assert [n.key for n in state.networks] == ["net-000000", "net-000001"]
    assert attrs["complete"] is True and isinstance(attrs["wall_seconds"], float)


# -- formats 1 and 2 (a dataset per tensor) are still read -------------------------------------------


def version_1(f):
    """A format-2 file made format 1: what the trainer wrote before restart_epochs existed."""
    f.attrs["format_version"] = 1
    for key in ("net-000000", "net-000001"):
        del f["networks"][key].attrs["restart_epochs"]


def assert_same_state(path, original):
    """The networks read from ``path`` equal those of the format-3 ``original`` (restart_epochs aside)."""
    _, state, attrs = read_result(path)
    _, expected, expected_attrs = read_result(original)
    assert {k: v for k, v in attrs.items() if k != "format_version"} == {
        k: v for k, v in expected_attrs.items() if k != "format_version"
    }
    for network, honest in zip(state.networks, expected.networks, strict=True):
        assert network.key == honest.key and network.epochs == honest.epochs and network.history == honest.history
        for name in ("weights", "exp_avg", "exp_avg_sq"):
            tensors, honest_tensors = getattr(network, name), getattr(honest, name)
            assert list(tensors) == list(honest_tensors), name
            for key, values in tensors.items():
                assert values.dtype == np.float32 and np.array_equal(values, honest_tensors[key]), (name, key)
    return state, attrs


def test_format_2_result_is_still_read_and_valid(small_result, small_result_v2):
    with h5py.File(small_result_v2[1], "r") as f:  # the helper really wrote the per-tensor layout
        assert f.attrs["format_version"] == 2 and "adam/exp_avg_sq/head.3.bias" in f[NET] and "weights" not in f[NET]
    state, attrs = assert_same_state(small_result_v2[1], small_result[1])
    assert attrs["format_version"] == 2
    assert validate_files(small_result[0], small_result_v2[1]).verdict == "valid"


def test_format_1_result_is_still_read_and_valid(small_result, small_result_v2, tmp_path):
    path = mutated(small_result_v2[1], tmp_path, version_1)
    state, attrs = assert_same_state(path, small_result[1])
    assert attrs["format_version"] == 1 and [n.restart_epochs for n in state.networks] == [[], []]
    assert validate_files(small_result[0], path).verdict == "valid"


def test_format_1_result_with_restart_epochs_is_refused(small_result, small_result_v2, tmp_path):
    def mutate(f):
        version_1(f)
        f[NET].attrs["restart_epochs"] = np.zeros(0, np.int64)

    outcome = validate_files(small_result[0], mutated(small_result_v2[1], tmp_path, mutate))
    assert_invalid(outcome, "network net-000000 has unexpected attributes ['restart_epochs']")


def test_format_2_rewritten_is_valid_and_format_3_written_as_format_2_is_refused(small_result, tmp_path):
    """Guards ``write_format_2``: from its own output it writes a valid file; and a format-2 file's
    layout is what its version says (a format-3 file relabelled is refused)."""
    path = write_format_2(small_result[1], tmp_path / "v2.h5")
    assert validate_files(small_result[0], path).verdict == "valid"
    relabelled = mutated(path, tmp_path, lambda f: f.attrs.__setitem__("format_version", 3))
    assert_invalid(
        validate_files(small_result[0], relabelled),
        f"{N}: missing ['exp_avg', 'exp_avg_sq', 'weights'], unexpected ['adam', 'head.0.bias', ",
    )


def gzip_tensor(f):
    values = f[NET]["head.0.weight"][()]
    del f[NET]["head.0.weight"]
    f[NET].create_dataset("head.0.weight", data=values, chunks=values.shape, compression="gzip")


def soft_link_v2(f):
    del f[NET]["head.0.weight"]
    f[NET]["head.0.weight"] = h5py.SoftLink("/networks/net-000001/head.0.weight")


def hard_link_v2(f):
    del f["networks/net-000001/adam/exp_avg/head.0.weight"]
    f["networks/net-000001/adam/exp_avg/head.0.weight"] = f[f"{NET}/adam/exp_avg/head.0.weight"]


def nest_v2(f):
    group = f[f"{NET}/adam/exp_avg"].create_group("deep")
    for _ in range(199):
        group = group.create_group("d")


def set_v2(path, index, value):
    def mutate(f):
        values = f[path][()]
        values[index] = value
        f[path][...] = values

    return mutate


FORMAT_2_CASES = {
    "gzip_tensor": (gzip_tensor, f"{N}: head.0.weight is stored chunked with filters ['deflate']"),
    "gzip_bomb_moment": (
        lambda f: gzip_bomb(f, f"{NET}/adam/exp_avg_sq/head.3.bias", 1 << 22),
        f"{N}: adam/exp_avg_sq/head.3.bias is stored chunked with filters ['deflate']",
    ),
    "soft_link_to_other_network": (soft_link_v2, f"{N}: head.0.weight is a link (SoftLink)"),
    "hard_link_from_other_network": (
        hard_link_v2,
        "network net-000001: adam/exp_avg/head.0.weight is the same stored object as network net-000000: adam/exp_avg/head.0.weight",
    ),
    "transposed_weight": (
        lambda f: f[NET].__setitem__("head.0.weight", f[NET].pop("head.0.weight")[()].T.copy()),
        f"{N}: head.0.weight has shape (12, 24), expected (24, 12)",
    ),
    "missing_moment": (lambda f: f.__delitem__(f"{NET}/adam/exp_avg_sq/rnn.weight_hh_l0"), "adam/exp_avg_sq: missing ['rnn.weight_hh_l0']"),
    "missing_history_field": (lambda f: f.__delitem__(f"{NET}/history/learning_rate"), f"{N}: history: missing ['learning_rate']"),
    "history_shorter_than_epochs": (
        lambda f: f[f"{NET}/history"].__setitem__("train_loss", f[f"{NET}/history"].pop("train_loss")[()][:1]),
        f"{N}: history/train_loss has shape (1,), expected (2,)",
    ),
    "deep_nesting_under_adam_moment": (nest_v2, f"{N}: adam/exp_avg: unexpected ['deep']"),
    "extra_attribute_on_tensor": (
        lambda f: f[f"{NET}/head.0.weight"].attrs.__setitem__("extra", 1),
        f"{N}: head.0.weight has attributes ['extra'], expected none",
    ),
    "nan_weight": (set_v2(f"{NET}/head.0.weight", (3, 4), np.nan), f"{N}: weights head.0.weight holds NaN or Inf"),
    "nan_moment": (set_v2(f"{NET}/adam/exp_avg/head.1.bias", 2, np.nan), f"{N}: exp_avg head.1.bias holds NaN or Inf"),
    "nan_history": (set_v2(f"{NET}/history/train_loss", 0, np.nan), f"{N}: history train_loss holds NaN or Inf"),
    "head_weight_plus_half": (
        lambda f: f[f"{NET}/head.3.weight"].__setitem__(Ellipsis, f[f"{NET}/head.3.weight"][()] + np.float32(0.5)),
        f"{N}: claims",
    ),
}


@pytest.mark.parametrize("case", sorted(FORMAT_2_CASES))
def test_format_2_layout_attack_is_refused(small_result_v2, tmp_path, case):
    """The old reader path (``tensors_per_dataset``) stays guarded as the format-3 one."""
    mutate, fragment = FORMAT_2_CASES[case]
    outcome = validate_files(small_result_v2[0], mutated(small_result_v2[1], tmp_path, mutate))
    assert_invalid(outcome, fragment)
