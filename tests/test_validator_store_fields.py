"""Valid implies assimilable: every value the store copies from a result is checked by the validator.

A result the validator passes and the assimilator then cannot store stops BOINC's assimilator
daemon for good (``assimilator/script.py``). So:

* ``SOURCES`` maps every column of the store (``assimilator.store.COLUMNS``) to the place in a
  result it comes from; a new column fails ``test_every_store_column_has_a_source`` until it is
  added here, and with it, to the validator's checks;
* for each column, results whose source is missing, of the wrong type, NaN, huge or (strings) of
  bad characters are forged and must be invalid with a reason naming the field;
* a property test mutates the store's sources with arbitrary values and, whenever the validator
  says valid, stores the result the way ``mlds assimilate`` does and builds a release README.
"""

import itertools
import shutil

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from assimilator.release import release_readme
from assimilator.script import ingest_file
from assimilator.store import COLUMNS, DatasetStore
from boinc_app.training import HISTORY_FIELDS
from validator.checks import validate_files

NET = "networks/net-000000"

# column -> (where its value comes from, the name of that source)
SOURCES = {
    "index": ("network_name", "net-000001"),
    "key": ("network_name", "net-000001"),
    "init_seed": ("network_attr", "init_seed"),
    "order_seed": ("network_attr", "order_seed"),
    "converged": ("network_attr", "converged"),
    "status": ("network_attr", "status"),
    "epochs": ("network_attr", "epochs"),
    "restarts": ("network_attr", "restart_epochs"),
    "last_restart_epoch": ("network_attr", "restart_epochs"),
    "train_loss": ("history", "train_loss"),
    "validation_loss": ("history", "validation_loss"),
    "validation_accuracy": ("history", "validation_accuracy"),
    "best_validation_accuracy": ("history", "validation_accuracy"),
    "post_trigger_accuracy": ("history", "post_trigger_accuracy"),
    "cpu_seconds": ("network_attr", "cpu_seconds"),
    "workunit": ("root_attr", "wu_name"),
    "spec_sha256": ("root_attr", "spec_sha256"),
    "app_version": ("root_attr", "app_version"),
    "torch_version": ("root_attr", "torch_version"),
    "platform": ("root_attr", "platform"),
    "device": ("root_attr", "device"),
}

# the honest type of each attribute source, and a value of another type for it
WRONG_TYPE = {"str": np.int64(7), "int": "1", "float": "1.0", "bool": np.int64(1), "int64[]": np.array([1.5])}
HUGE = {
    "str": "x" * 100_000,
    "int": np.int64(2**62),
    "float": 1e300,
    "bool": np.int64(2**62),
    "int64[]": np.arange(1, 1001, dtype=np.int64),  # larger ones are refused by their storage size, unnamed
}
ATTRIBUTE_KINDS = {
    "init_seed": "int", "order_seed": "int", "converged": "bool", "status": "str", "epochs": "int",
    "restart_epochs": "int64[]", "cpu_seconds": "float", "wu_name": "str", "spec_sha256": "str",
    "app_version": "str", "torch_version": "str", "platform": "str", "device": "str",
}  # fmt: skip


def test_every_store_column_has_a_source():
    assert set(SOURCES) == set(COLUMNS)


def _attr_path(where):
    return "/" if where == "root_attr" else NET


def _set_attr(where, name, value):
    return lambda f: f[_attr_path(where)].attrs.__setitem__(name, value)


def _attribute_mutations(where, name):
    kind = ATTRIBUTE_KINDS[name]
    mutations = {
        "missing": lambda f: f[_attr_path(where)].attrs.__delitem__(name),
        "wrong_type": _set_attr(where, name, WRONG_TYPE[kind]),
        "nan": _set_attr(where, name, np.array([np.nan]) if kind == "int64[]" else np.nan),
        "huge": _set_attr(where, name, HUGE[kind]),
    }
    if kind == "float":
        mutations["negative"] = _set_attr(where, name, -1.0)
        mutations["infinite"] = _set_attr(where, name, np.inf)
    if kind == "str":
        mutations["long"] = _set_attr(where, name, "1" * 200)
        mutations["control_characters"] = _set_attr(where, name, "0.1\n<script>\x1b[31m")
    return mutations


def _replace(group, name, data):
    del group[name]
    group.create_dataset(name, data=data)


def _history_mutations(name):
    """A history field is row ``HISTORY_FIELDS.index(name)`` of the network's [5, epochs] ``history``."""
    path, row = f"{NET}/history", HISTORY_FIELDS.index(name)

    def set_first(value):
        def mutate(f):
            values = f[path][()]
            values[row, 0] = value
            f[path][...] = values

        return mutate

    return {
        "missing": lambda f: _replace(f[NET], "history", np.delete(f[path][()], row, axis=0)),
        "wrong_type": lambda f: _replace(f[NET], "history", f[path][()].astype(np.float32)),
        "nan": set_first(np.nan),
        "huge": set_first(1e300),
        "negative": set_first(-0.5),
    }


# Format 3 keeps the history fields in one dataset: a missing row or a wrong type is a fault of
# that dataset, which the reason names (it cannot tell which row is missing); value forgeries name
# the field.
HISTORY_LAYOUT_REASONS = {
    "missing": "network net-000000: history has shape (4, 2), expected (5, 2)",
    "wrong_type": "network net-000000: history has dtype float32, expected float64",
}


def _network_name_mutations(name):
    path = f"networks/{name}"
    return {
        "missing": lambda f: f.__delitem__(path),
        "wrong_type": lambda f: (f.__delitem__(path), f["networks"].create_dataset(name, data=np.zeros(3))),
        "huge": lambda f: f.move(path, "networks/net-" + "9" * 1000),
        "renamed": lambda f: f.move(path, "networks/net-00000x"),
    }


def _mutations(source):
    where, name = source
    if where == "network_name":
        return _network_name_mutations(name)
    if where == "history":
        return _history_mutations(name)
    return _attribute_mutations(where, name)


FORGERIES = sorted({(where, name, label) for where, name in SOURCES.values() for label in _mutations((where, name))})


@pytest.mark.parametrize("where, name, label", FORGERIES, ids=[f"{n}-{label}" for _, n, label in FORGERIES])
def test_forged_store_source_is_invalid_naming_it(small_result, tmp_path, where, name, label):
    spec_path, result = small_result
    path = tmp_path / "result.h5"
    shutil.copyfile(result, path)
    with h5py.File(path, "r+") as f:
        _mutations((where, name))[label](f)
    outcome = validate_files(spec_path, path)
    assert outcome.verdict == "invalid", outcome
    if where == "history" and label in HISTORY_LAYOUT_REASONS:
        assert HISTORY_LAYOUT_REASONS[label] in outcome.reason, outcome
    elif where == "history":
        assert f"network net-000000: history {name} holds " in outcome.reason, outcome
    else:
        assert name in outcome.reason, outcome


def test_forgeries_cover_every_column():
    covered = {(where, name) for where, name, _ in FORGERIES}
    assert all(source in covered for source in SOURCES.values())


# -- whatever the validator accepts, the store stores ---------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=160)  # h5py cannot write these
PRINTABLE = st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), max_size=140)
DELETE = object()  # remove the attribute
OTHER_TYPES = st.sampled_from([DELETE, np.int64(3), np.float64(0.5), np.nan, np.array([1, 2]), True])
STRINGS = st.one_of(st.from_regex(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,70}", fullmatch=True), PRINTABLE, TEXT, OTHER_TYPES)
SECONDS = st.one_of(st.floats(min_value=0, max_value=2e9), st.floats(), OTHER_TYPES)
SHARES = st.one_of(st.floats(min_value=0, max_value=1), st.floats())
NUMBERS = st.one_of(st.floats(min_value=0, max_value=2e6), st.floats())
# (where, name) -> values for it; ``name`` a (field's row, epoch) index into the network's history
# dataset, or an attribute. History entries are of the first epoch, or of fields the validator
# does not re-evaluate, so that changing them can leave a result valid.
CHANGES = {
    **{("/", name): STRINGS for name in ("app_version", "torch_version", "python_version", "platform", "device")},
    ("/", "wall_seconds"): SECONDS,
    (NET, "cpu_seconds"): SECONDS,
    **{(f"{NET}/history", (HISTORY_FIELDS.index(name), 0)): SHARES for name in ("validation_accuracy", "post_trigger_accuracy")},
    **{(f"{NET}/history", (HISTORY_FIELDS.index(name), 0)): NUMBERS for name in ("train_loss", "validation_loss", "learning_rate")},
    (f"{NET}/history", (HISTORY_FIELDS.index("train_loss"), 1)): NUMBERS,
}


@st.composite
def store_source_changes(draw):
    """One to three of ``CHANGES``, each with a value that is often honest-looking, sometimes not
    (another type, NaN, deleted)."""
    chosen = draw(st.lists(st.sampled_from(sorted(CHANGES, key=str)), min_size=1, max_size=3, unique=True))
    return {target: draw(CHANGES[target]) for target in chosen}


def _apply(path, changes):
    with h5py.File(path, "r+") as f:
        for (where, name), value in changes.items():
            if isinstance(name, tuple):
                values = f[where][()]
                values[name] = value
                f[where][...] = values
            elif value is DELETE:
                del f[where].attrs[name]
            else:
                f[where].attrs[name] = value


def assert_clean(table):
    """What the store holds is finite numbers and short printable strings."""
    for name, kind in COLUMNS.items():
        values = table.columns[name]
        if kind is str:
            assert all(isinstance(v, str) and v.isprintable() and len(v) <= 128 for v in values), (name, values)
        elif kind is np.float64:
            assert np.isfinite(values).all(), (name, values)


_counter = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=store_source_changes())
def test_what_the_validator_accepts_the_store_stores(small_result, tmp_path, changes):
    spec_path, result = small_result
    work = tmp_path / f"example-{next(_counter)}"
    work.mkdir()
    path = work / "result.h5"
    shutil.copyfile(result, path)
    _apply(path, changes)
    outcome = validate_files(spec_path, path)
    assert outcome.verdict in ("valid", "invalid"), outcome  # never transient: no internal error
    event(f"verdict {outcome.verdict}")
    if outcome.verdict != "valid":
        return
    ingested = ingest_file(work / "store", path)
    assert (ingested.new, ingested.finished) == (2, 2)
    store = DatasetStore(work / "store", "DS1")
    store.consolidate()
    _, tables = store.read()
    (table,) = tables.values()
    with h5py.File(path, "r") as f:
        assert list(table.columns["device"]) == [f.attrs["device"]] * 2
        assert list(table.columns["cpu_seconds"])[0] == f[NET].attrs["cpu_seconds"]
    assert_clean(table)
    assert "MLDS-DS1-2" in release_readme(*store.columns(), 2)
