"""Shared fixtures, and the CI rule: under ``CI=true`` a skipped test is a failure."""

import os

import pytest
import torch

from boinc_app.standalone import SilentControl  # noqa: F401 - tests import it from conftest too
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.workunit_spec import write_spec
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


def train_small(directory, dataset="DS1", machine="SingleInvertMachine", networks=2, max_epochs=2, seed=1):
    """Write a small spec into ``directory`` and train it; returns ``(spec_path, result_path)``.

    1,000 training sequences: few enough steps that no network converges in ``max_epochs`` = 2."""
    spec = with_data(make_spec(dataset, machine, networks=networks, seed=seed, max_epochs=max_epochs), train_size=1000)
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
