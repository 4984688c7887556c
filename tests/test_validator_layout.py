"""Hostile layouts: files that are small on disk but expensive or misleading to read.

The reader must refuse them from their layout, before reading any data: compression bombs (a
tiny gzip chunk that inflates to a gigabyte), filters of any kind, chunked and resizable datasets,
compact storage, declared shapes without storage, objects linked twice, extra attributes and
objects, attribute bombs, wrong byte orders and types, deep nesting. Where the point is the cost,
the validator runs in a child process that reports the growth of its peak resident memory, and a
control in the same child shows that reading the file naively really does cost that memory. The
peak is Linux's high-water mark of resident memory, reset just before each measured call.
"""

import json
import subprocess
import sys
import zlib

import h5py
import numpy as np
import pytest

from boinc_app.result_file import ResultFileError, read_result
from tests.test_validator_hostile import mutated
from validator.checks import validate_files

NET = "networks/net-000000"
MB = 1 << 20




def assert_invalid(outcome, *fragments):
    assert outcome.verdict == "invalid", outcome
    for fragment in fragments:
        assert fragment in outcome.reason, outcome


def gzip_bomb(f, path, elements):
    """Store ``path``'s honest values as the start of one gzip chunk of ``elements`` float32: reading
    the 8 values inflates the whole chunk. Written chunk by chunk, so making it costs ~1 MB."""
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
    path = mutated(result, tmp_path, lambda f: gzip_bomb(f, f"{NET}/head.3.bias", elements))
    assert path.stat().st_size < result.stat().st_size + MB
    measured = peak_memory(spec_path, path, control=f"{NET}/head.3.bias")
    assert measured["verdict"] == "invalid", measured
    assert "head.3.bias is stored chunked with filters ['deflate']" in measured["reason"]
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
        values = f[NET]["head.0.weight"][()]
        del f[NET]["head.0.weight"]
        f[NET].create_dataset("head.0.weight", data=values, chunks=values.shape, **FILTERS[name])

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "head.0.weight is stored chunked with filters [", "results are contiguous and unfiltered")


@pytest.mark.parametrize("maxshape", [None, (None, 12)], ids=["chunked", "resizable"])
def test_chunked_or_resizable_dataset_is_refused(small_result, tmp_path, maxshape):
    def mutate(f):
        values = f[NET]["head.0.weight"][()]
        del f[NET]["head.0.weight"]
        f[NET].create_dataset("head.0.weight", data=values, chunks=(4, 4), maxshape=maxshape)

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "head.0.weight is stored chunked; results are contiguous")


def compact_dataset(group, name, values):
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple(values.shape)
    dataset = h5py.h5d.create(group.id, name.encode(), h5py.h5t.IEEE_F32LE, space, dcpl=plist)
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, values)


def test_compact_dataset_is_refused(small_result, tmp_path):
    def mutate(f):
        values = f[NET]["head.1.bias"][()]
        del f[NET]["head.1.bias"]
        compact_dataset(f[NET], "head.1.bias", values)

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "head.1.bias is stored compact")


# -- declared shapes without storage --------------------------------------------------------------


def test_unallocated_tensor_is_refused(small_result, tmp_path):
    """Right shape and dtype, no storage: it would read as fill values."""

    def mutate(f):
        del f[NET]["head.0.weight"]
        f[NET].create_dataset("head.0.weight", shape=(24, 12), dtype="<f4")

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "head.0.weight stores 0 bytes at offset None for 1152 bytes")


def huge_history(f):
    """2^40 epochs claimed, and a history of that length that has no storage (8 TB of fill values)."""
    f[NET].attrs["epochs"] = 2**40
    for name in list(f[NET]["history"]):
        del f[NET]["history"][name]
        f[NET]["history"].create_dataset(name, shape=(2**40,), dtype="<f8")


def test_huge_declared_history_is_refused_cheaply(small_result, tmp_path):
    spec_path, result = small_result
    measured = peak_memory(spec_path, mutated(result, tmp_path, huge_history))
    assert measured["verdict"] == "invalid", measured
    assert "1099511627776 epochs, more than the spec's max_epochs 2" in measured["reason"]
    assert measured["validation"] < 32 * MB, measured


def test_huge_declared_weight_shape_is_refused(small_result, tmp_path):
    def mutate(f):
        del f[NET]["head.3.bias"]
        f[NET].create_dataset("head.3.bias", shape=(2**40,), dtype="<f4")

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "head.3.bias has shape (1099511627776,), expected (8,)")


# -- objects linked twice, extra attributes and objects --------------------------------------------


def test_tensor_hard_linked_from_another_network_is_refused(small_result, tmp_path):
    """A hard link is not a link to refuse by its kind: the object it names is shared."""

    def mutate(f):
        del f["networks/net-000001/head.0.weight"]
        f["networks/net-000001/head.0.weight"] = f[f"{NET}/head.0.weight"]

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "network net-000001: head.0.weight is the same stored object as network net-000000: head.0.weight")


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("/", "the file has unexpected attributes ['extra']"),
        (NET, "network net-000000 has unexpected attributes ['extra']"),
        ("networks", "/networks has attributes ['extra'], expected none"),
        (f"{NET}/history", "network net-000000: history has attributes ['extra'], expected none"),
        (f"{NET}/adam/exp_avg", "adam/exp_avg has attributes ['extra'], expected none"),
        (f"{NET}/head.0.weight", "network net-000000: head.0.weight has attributes ['extra'], expected none"),
        (f"{NET}/history/train_loss", "history/train_loss has attributes ['extra'], expected none"),
    ],
)
def test_extra_attribute_is_refused(small_result, tmp_path, path, fragment):
    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, lambda f: f[path].attrs.__setitem__("extra", 1)))
    assert_invalid(outcome, fragment)


def test_committed_datatype_is_refused(small_result, tmp_path):
    def mutate(f):
        f["float"] = np.dtype("<f4")
        values = f[NET]["head.0.bias"][()]
        del f[NET]["head.0.bias"]
        f[NET].create_dataset("head.0.bias", data=values, dtype=f["float"])

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "the file's top level: unexpected ['float']")
    with h5py.File(tmp_path / "result.h5", "r+") as f:
        del f["float"]  # the dataset keeps its committed type
    assert_invalid(validate_files(small_result[0], tmp_path / "result.h5"), "head.0.bias has dtype float32, expected float32")


@pytest.mark.parametrize(
    "count, fragments",
    [(100, ("network net-000000 has 109 attributes, expected 9",)),
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
    [(100, ("network net-000000: history holds 105 objects, expected 5",)),
     (5000, ("network net-000000: history has ", " bytes of object header, attributes and links"))],
)  # fmt: skip
def test_many_members_are_refused_before_listing(small_result, tmp_path, count, fragments):
    def mutate(f):
        for i in range(count):
            f[NET]["history"][f"h{i}"] = h5py.SoftLink("/nowhere")

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
            retype(f"{NET}/history/validation_loss", ">f8"), "validation_loss has dtype >f8, expected float64", id="big_endian_history"
        ),
        pytest.param(retype(f"{NET}/adam/exp_avg_sq/head.0.bias", ">f4"), "head.0.bias has dtype >f4", id="big_endian_moment"),
        pytest.param(retype(f"{NET}/head.0.bias", np.float16), "head.0.bias has dtype float16", id="float16_weight"),
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


def version_1(f):
    """A format-1 result: what the trainer wrote before restart_epochs existed."""
    f.attrs["format_version"] = 1
    for key in ("net-000000", "net-000001"):
        del f["networks"][key].attrs["restart_epochs"]


def test_format_1_result_is_still_read_and_valid(small_result, tmp_path):
    path = mutated(small_result[1], tmp_path, version_1)
    _, state, _ = read_result(path)
    assert [n.restart_epochs for n in state.networks] == [[], []]
    assert validate_files(small_result[0], path).verdict == "valid"


def test_format_1_result_with_restart_epochs_is_refused(small_result, tmp_path):
    def mutate(f):
        version_1(f)
        f[NET].attrs["restart_epochs"] = np.zeros(0, np.int64)

    outcome = validate_files(small_result[0], mutated(small_result[1], tmp_path, mutate))
    assert_invalid(outcome, "network net-000000 has unexpected attributes ['restart_epochs']")
