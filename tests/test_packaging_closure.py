"""Which installed packages the frozen trainer may carry (mlds.package.closure)."""

import importlib.util

import pytest

from mlds.package.closure import canonical, foreign_modules, requirement_closure


def test_the_closure_holds_the_trainer_s_requirements_and_theirs():
    closure = requirement_closure()
    assert {"torch", "numpy", "h5py", "click"} <= closure
    assert {"sympy", "filelock"} <= closure  # torch's own requirements
    assert canonical("Typing_Extensions") == "typing-extensions" and "typing-extensions" in closure


def test_packages_outside_the_closure_are_excluded_and_the_project_never_is():
    foreign = set(foreign_modules())
    assert not foreign & {"torch", "numpy", "h5py", "click", "sympy", "boinc_app", "machines", "mlds"}
    assert "pytest" in foreign  # installed here, and no requirement of the trainer's


@pytest.mark.parametrize("module", ["lxml", "sklearn", "matplotlib", "numba", "scipy"])
def test_the_analysis_extra_stays_out_of_the_bundle(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed here, so there is nothing to exclude")
    assert module in foreign_modules()
