"""The README's quick start is exactly two commands, and .ci/run runs exactly those."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", REPO / ".ci" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_start_has_two_commands_main_job_then_tests():
    commands = load_quickstart().quickstart_commands((REPO / "README.rst").read_text())
    assert len(commands) == 2
    assert "constraints.txt" in commands[0] and commands[0].endswith("mlds run")
    assert "constraints.txt" in commands[1] and "pytest" in commands[1]


def test_ci_runs_the_readme_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert "quickstart.py 1" in ci and "quickstart.py 2" in ci
    assert "CI=true" in ci


def test_constraints_pin_the_cpu_torch_and_setup_cfg_accepts_a_range():
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text()
    setup = (REPO / "setup.cfg").read_text()
    assert "torch>=" in setup and "torch==" not in setup
