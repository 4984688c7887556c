"""What a BOINC server installs: ``pip install mlds`` pulls no test-server dependency, and every
program a project runs imports without it."""

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_MODULES = ("mlds.cli", "mlds.server.install", "mlds.server.publish", "mlds.server.validation_service",
                  "workgen.generator", "validator.boinc_script", "assimilator.boinc_script")  # fmt: skip
BLOCK_CRYPTOGRAPHY = "import sys; sys.modules['cryptography'] = None; "


def test_the_runtime_requirements_leave_the_test_server_out():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    runtime = config["options"]["install_requires"]
    extras = config["options.extras_require"]
    assert "cryptography" not in runtime and "cryptography" in extras["test-server"]
    assert "PyMySQL" in runtime  # the work generator reads BOINC's database


def test_the_server_programs_import_without_the_test_server_dependencies():
    code = BLOCK_CRYPTOGRAPHY + "".join(f"import {m}; " for m in SERVER_MODULES)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_test_server_names_its_extra_when_it_is_missing(tmp_path):
    code = BLOCK_CRYPTOGRAPHY + "from mlds.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "test-server", "init", "--project", str(tmp_path / "p")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and "mlds[test-server]" in done.stderr
