"""The frozen trainer (``mlds package build``, ``mlds.package.freeze``), built once and run as a
volunteer runs it: no Python, no torch, nothing of the source tree.

One bundle per session (fixture ``bundle``). A build takes about two minutes on two cores, so
outside CI it is cached under ``~/.cache/mlds/frozen/<digest>`` (``MLDS_FROZEN_CACHE`` to move
it), keyed by ``build_inputs_digest``: the trainer's sources, the freeze module, every installed
distribution's version and the build options. Any change to what a build reads makes a new key,
so a cached bundle is never stale; only the newest entry is kept (a bundle is ~800 MB). Under
``CI=true`` the bundle is always built fresh into the session's temporary directory: CI checks
that a build works, and its build time is part of what it reports. Either way the bundle lies
outside the checkout, and every run below uses ``env -i`` in a fresh directory.
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from boinc_app.result_file import read_result
from boinc_app.version import __version__
from mlds.cli import main
from mlds.package.closure import foreign_modules
from mlds.package.contents import bundle_modules, server_modules
from mlds.package.freeze import NAME, REPO_ROOT, FreezeConfig, build_inputs_digest, freeze
from tests.conftest import IN_CI, train_spec
from tests.test_boinc_app_boinc_protocol import FakeClient
from tests.test_boinc_app_training import assert_same_networks
from workgen.specs import make_spec, with_data

pytestmark = [
    pytest.mark.frozen,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None, reason="needs PyInstaller: pip install 'mlds[package]'"),
    pytest.mark.timeout(1200),
]

CACHE = Path(os.environ.get("MLDS_FROZEN_CACHE", Path.home() / ".cache" / "mlds" / "frozen"))
BUILD_NOTES = ("warn-mlds-train.txt", "xref-mlds-train.html")  # PyInstaller's import-graph reports


def build_into(root):
    """Build a bundle under ``root`` (dist/, notes/); PyInstaller's work dir is removed after."""
    work = root / "work"
    bundle = freeze(FreezeConfig(dist=str(root / "dist"), work=str(work)))
    (root / "notes").mkdir()
    for note in BUILD_NOTES:
        shutil.copy(work / NAME / note, root / "notes" / note)
    shutil.rmtree(work)
    (root / "build-seconds").write_text(f"{bundle.build_seconds:.1f}\n")
    return root


def cached_build():
    """The cached bundle for these inputs, built (and the older entries removed) when missing."""
    entry = CACHE / build_inputs_digest(FreezeConfig())
    if not (entry / "build-seconds").exists():
        shutil.rmtree(CACHE, ignore_errors=True)
        partial = CACHE / f"{entry.name}.partial"
        partial.mkdir(parents=True)
        build_into(partial).rename(entry)
    return entry


_SESSION_BUNDLE = {}  # one build per session, shared with tests/test_packaging_e2e.py's fixture


def session_bundle(tmp_path_factory):
    """The bundle of this session: built once (fresh under CI, else from the cache)."""
    if "root" not in _SESSION_BUNDLE:
        _SESSION_BUNDLE["root"] = build_into(tmp_path_factory.mktemp("frozen")) if IN_CI else cached_build()
    root = _SESSION_BUNDLE["root"]
    assert not root.resolve().is_relative_to(Path(REPO_ROOT).resolve()), "the bundle must lie outside the checkout"
    return root / "dist" / NAME


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    return session_bundle(tmp_path_factory)


def run_frozen(bundle, *arguments, cwd):
    """Run the frozen trainer with an empty environment (``env -i``) in ``cwd``."""
    return subprocess.run(["env", "-i", str(bundle / NAME), *arguments], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_bundle_holds_the_trainer_and_no_server_module(bundle):
    modules = bundle_modules(str(bundle), str(bundle / NAME))
    assert {"boinc_app.main", "boinc_app.training", "machines.automata", "torch.optim.adam"} <= modules
    assert server_modules(modules) == []


def test_bundle_holds_no_package_outside_the_trainer_s_requirements(bundle):
    """Whatever else the build environment holds (CI's has the analysis extra: scipy, numba,
    matplotlib, lxml...), the bundle carries only the closure of the trainer's requirements."""
    tops = {m.split(".")[0] for m in bundle_modules(str(bundle), str(bundle / NAME))}
    foreign = set(foreign_modules())
    assert "torch" in tops and "h5py" in tops
    assert tops & foreign == set(), sorted(tops & foreign)


def test_no_trainer_module_misses_an_import(bundle):
    """PyInstaller's warn file names who imports each module it could not find: none may be ours,
    except Windows-only modules imported conditionally."""
    warnings = (bundle.parents[1] / "notes" / "warn-mlds-train.txt").read_text().splitlines()
    ours = [line for line in warnings if "boinc_app" in line or "machines." in line]
    assert all(line.startswith("missing module named msvcrt ") for line in ours), ours


def test_version_in_an_empty_environment(bundle, tmp_path):
    done = run_frozen(bundle, "--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"mlds-train, version {__version__}\n"), done.stderr


TINY_SPEC = with_data(make_spec("DS1", "SingleInvertMachine", networks=2, seed=5, max_epochs=2), train_size=1000)


@pytest.fixture(scope="module")
def source_trained(tmp_path_factory):
    return train_spec(tmp_path_factory.mktemp("from_source"), TINY_SPEC)


def assert_bitwise_equal(frozen_result, source_result):
    (_, frozen, _), (_, source, _) = read_result(frozen_result), read_result(source_result)
    assert_same_networks(frozen, source)  # weights, second moments, history, epochs, status
    for x, y in zip(frozen.networks, source.networks):
        assert all(np.array_equal(x.exp_avg[key], y.exp_avg[key]) for key in x.weights), x.key


@pytest.fixture(scope="module")
def frozen_and_source(bundle, source_trained, tmp_path_factory):
    """The same tiny spec trained by the frozen trainer (empty environment) and from source."""
    source_spec, source_result = source_trained
    volunteer = tmp_path_factory.mktemp("volunteer")
    shutil.copy(source_spec, volunteer / "spec.json")
    done = run_frozen(bundle, "spec.json", "-o", "result.h5", cwd=volunteer)
    assert done.returncode == 0, done.stderr
    return source_spec, source_result, volunteer / "result.h5"


def test_frozen_result_is_bitwise_the_source_result(frozen_and_source):
    _, source_result, frozen_result = frozen_and_source
    assert_bitwise_equal(frozen_result, source_result)


def test_validate_accepts_the_frozen_result(frozen_and_source):
    spec, _, frozen_result = frozen_and_source
    checked = CliRunner().invoke(main, ["validate", str(spec), str(frozen_result), "--no-limits"])
    assert checked.exit_code == 0, checked.output
    assert "valid: 2 networks" in checked.output


def test_frozen_trainer_speaks_the_boinc_protocol_in_a_slot(bundle, source_trained, tmp_path):
    """A slot laid out as the client lays it out (init_data.xml, shared memory, soft links), the
    frozen trainer started there with no environment but the thread counts the client sets."""
    fake = FakeClient(tmp_path, TINY_SPEC)
    fake.command, fake.env = [str(bundle / NAME)], {}
    try:
        code = fake.start().wait()
    finally:
        fake.kill()
    assert code == 0, fake.stderr()
    assert (fake.slot / "boinc_finish_called").read_text() == "0\n"
    assert "BOINC mode" in fake.stderr() and "finished" in fake.stderr()
    assert fake.reported("fraction_done") and fake.reported("fraction_done")[-1] == 1.0
    assert_bitwise_equal(fake.result, source_trained[1])
