"""Shared fixtures, and the CI rule: under ``CI=true`` a skipped test is a failure."""

import dataclasses
import json
import os

import h5py
import numpy as np
import pytest
import torch

from boinc_app.networks import parameter_layout, unflatten_tensors
from boinc_app.result_file import FLAT_TENSORS, MOMENTS
from boinc_app.standalone import SilentControl  # noqa: F401 - tests import it from conftest too
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.training import HISTORY_FIELDS
from boinc_app.workunit_spec import spec_from_dict, write_spec
from workgen.specs import make_spec, with_data

pytest_plugins = ["tests.boinc_server_fixtures"]

IN_CI = os.environ.get("CI", "").lower() == "true"

# One thread: the trainer runs single-threaded per process, and oversubscribed cores make
# small-tensor work many times slower.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    selected = [item for item in items if "gpu" not in item.keywords]
    deselected = [item for item in items if "gpu" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true forbids skips): {report.longrepr}"


def train_small(directory, dataset="DS1", machine="SingleInvertMachine", networks=2, max_epochs=2, seed=1, snapshot_epochs=()):
    """Write a small spec into ``directory`` and train it; returns ``(spec_path, result_path)``.

    1,000 training sequences: few enough steps that no network converges in ``max_epochs`` = 2.
    No snapshots by default, so the result can be rewritten in the older formats that had none
    (``write_format_2``); tests/test_validator_snapshots.py covers them."""
    spec = with_data(make_spec(dataset, machine, networks=networks, seed=seed, max_epochs=max_epochs), train_size=1000)
    spec = dataclasses.replace(spec, snapshot_epochs=snapshot_epochs)
    spec_path = directory / "spec.json"
    result_path = directory / "result.h5"
    write_spec(spec, spec_path)
    run_trainer(TrainerConfig(str(spec_path), str(result_path)), SilentControl)
    return spec_path, result_path


@pytest.fixture(scope="session")
def small_result(tmp_path_factory):
    """A trained DS1 result (2 networks, 2 epochs) shared read-only by many tests."""
    return train_small(tmp_path_factory.mktemp("small_result"))


@pytest.fixture(scope="session")
def small_ds2_result(tmp_path_factory):
    """A trained DS2 result (2 networks, 2 epochs)."""
    return train_small(tmp_path_factory.mktemp("small_ds2_result"), dataset="DS2", machine="ParityModified")


def train_spec(directory, spec, name="result.h5"):
    """Write ``spec`` into ``directory`` and train it; returns ``(spec_path, result_path)``."""
    spec_path, result_path = directory / f"{spec.name}.json", directory / name
    write_spec(spec, spec_path)
    run_trainer(TrainerConfig(str(spec_path), str(result_path)), SilentControl)
    return spec_path, result_path


@pytest.fixture(scope="session")
def unfinished_result(tmp_path_factory):
    """A DS1 result whose 2 networks are still training (2 of 4 epochs): it needs a follow-up."""
    spec = with_data(make_spec("DS1", "SingleInvertMachine", networks=2, max_epochs=4, epoch_budget=2), train_size=1000)
    return train_spec(tmp_path_factory.mktemp("unfinished_result"), spec)


# -- result files of format 3 (flat vectors) and of format 2 (a dataset per tensor) ----------------


def file_layout(f):
    """``parameter_layout`` of the architecture of the spec embedded in the open result file ``f``."""
    return parameter_layout(spec_from_dict(json.loads(f.attrs["spec"])).architecture)


def tensor_slice(layout, name):
    """``(slice, shape)``: where tensor ``name`` lives in a format-3 flat vector (``weights``,
    ``exp_avg``, ``exp_avg_sq``) of ``layout`` (``parameter_layout`` of an architecture)."""
    offset = 0
    for key, shape in layout:
        size = int(np.prod(shape))
        if key == name:
            return slice(offset, offset + size), tuple(shape)
        offset += size
    raise KeyError(name)


def edit_tensor(f, network, name, change, vector="weights"):
    """Apply ``change`` in place to tensor ``name`` (shaped as in the module) of the flat dataset
    ``vector`` of ``network`` (a path such as ``networks/net-000000``) in the open file ``f``."""
    where, shape = tensor_slice(file_layout(f), name)
    values = f[network][vector][()]
    change(values[where].reshape(shape))  # a view: changes ``values``
    f[network][vector][...] = values


def edit_history(f, network, field, change):
    """Apply ``change`` in place to the row of history field ``field`` of ``network``."""
    values = f[network]["history"][()]
    change(values[HISTORY_FIELDS.index(field)])
    f[network]["history"][...] = values


def write_format_2(source, target):
    """Rewrite the format-3 or 4 result (without snapshots) ``source`` as ``target`` in the format-2 layout (a dataset per
    tensor ``<key>/<tensor>``, ``adam/exp_avg/<tensor>``, ``adam/exp_avg_sq/<tensor>``,
    ``history/<field>``), as the format-2 writer did, with the same attributes but
    ``format_version`` 2. Returns ``target``."""
    with h5py.File(source, "r") as old, h5py.File(target, "w", track_order=True) as new:
        layout = file_layout(old)
        new.attrs.update(dict(old.attrs))
        new.attrs["format_version"] = 2
        networks = new.create_group("networks", track_order=True)
        for key, network in old["networks"].items():
            group = networks.create_group(key, track_order=True)
            group.attrs.update({name: value for name, value in network.attrs.items() if name != "snapshot_epochs"})
            tensors = {name: unflatten_tensors(network[name][()], layout) for name in FLAT_TENSORS}
            for name, values in tensors["weights"].items():
                group.create_dataset(name, data=values)
            history = group.create_group("history", track_order=True)
            for field, row in zip(HISTORY_FIELDS, network["history"][()]):
                history.create_dataset(field, data=row)
            for moment in MOMENTS:
                moments = group.create_group(f"adam/{moment}", track_order=True)
                for name, values in tensors[moment].items():
                    moments.create_dataset(name, data=values)
    return target


@pytest.fixture(scope="session")
def small_result_v2(small_result, tmp_path_factory):
    """``small_result`` rewritten in the format-2 layout: ``(spec_path, result_path)``."""
    return small_result[0], write_format_2(small_result[1], tmp_path_factory.mktemp("small_result_v2") / "result.h5")


PLATFORM = "x86_64-pc-linux-gnu"  # the app-version platform of the packaging tests
STAND_IN = """#!/bin/sh
echo "args: $*"
echo "cwd: $(pwd)"
echo "internal: $(cat "$(dirname "$0")/_internal/data.txt")"
"""


@pytest.fixture
def bundle(tmp_path):
    """A stand-in for the frozen onedir bundle: a shell script as ``mlds-train`` that prints its
    arguments, working directory and a data file of ``_internal/``, for the fast packaging tests
    (test_packaging_freeze.py overrides it with the real bundle)."""
    directory = tmp_path / "dist" / "mlds-train"
    (directory / "_internal" / "sub").mkdir(parents=True)
    (directory / "mlds-train").write_text(STAND_IN)
    (directory / "mlds-train").chmod(0o755)
    (directory / "_internal" / "data.txt").write_text("bundle data\n")
    (directory / "_internal" / "sub" / "lib.so").write_bytes(os.urandom(5000))
    return directory
