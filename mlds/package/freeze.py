"""Freeze the trainer (``boinc_app.main:main``, console script ``mlds-train``) with PyInstaller.

Volunteers install no Python and no torch: BOINC sends them this bundle. The choices, and why:

- **onedir**, not onefile: a onefile executable unpacks the whole bundle (hundreds of MB of torch)
  into a temporary directory at every start, and a BOINC task starts again at every resume.
- **the torch hook of pyinstaller-hooks-contrib**, no hand-collected libraries: it knows torch's
  versioned shared libraries and that TorchScript and ``inspect`` need torch's ``.py`` sources; a
  hand-written list breaks with the next torch release.
- **PyInstaller in a child process**: a build is global state inside PyInstaller (one build per
  process), and the child's output is the build log the packager reads.
- **server packages are not excluded**, only left unreached: ``boinc_app`` and ``machines`` must not
  import ``mlds``, ``workgen``, ``validator`` or ``assimilator``, and the bundle's module list
  (``mlds.package.contents``) is the check. An ``--exclude-module mlds`` would hide such an import
  from that check and break the app at run time instead.
- **foreign packages**: every installed distribution outside the closure of the trainer's
  requirements is excluded (``mlds.package.closure``), so the bundle is the same whatever else the
  build environment holds (the analysis extra added 236 MB before).
- **cuts**: modules the hook collects that the trainer never imports (``CUTS``) and torch's C++
  test programs (``TORCH_TEST_FILES``), left out by the spec (packaging/mlds-train.spec); each
  cut's saving is measured in docs/packaging.md, and the frozen tests pass without them.
"""

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

NAME = "mlds-train"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY_SCRIPT = os.path.join(REPO_ROOT, "packaging", "mlds_train.py")
SPEC_FILE = os.path.join(REPO_ROOT, "packaging", "mlds-train.spec")

# The sources a bundle is built from (besides the installed distributions).
SOURCE_DIRS = ("boinc_app", "machines", "packaging")

# Cuts, measured one after the other in docs/packaging.md (bench/bundle_size.py). Torch's hook
# collects every torch submodule, and some of them import these optionally; the trainer imports
# none of them, not even through ``import torch._dynamo`` (kept: torch.optim imports it).
DEV_TOOLS = ("pytest", "_pytest", "pluggy", "iniconfig", "hypothesis", "attr", "attrs", "sortedcontainers",
             "setuptools", "pkg_resources", "distutils", "_distutils_hack", "pygments")  # fmt: skip
COMPILER_ONLY = ("jinja2", "markupsafe", "networkx", "fsspec")  # torch._inductor codegen, torch.hub
# Bundle paths (fnmatch) of torch's C++ test programs and test libraries, and protoc: data files to
# the hook, never loaded by torch. torch/bin/torch_shm_manager stays: ``import torch`` checks it.
TORCH_TEST_FILES = ("torch/test/*", "torch/bin/*test*", "torch/bin/*Test", "torch/bin/protoc*", "torch/bin/*.pt*",
                    "torch/lib/lib*_test.so", "torch/lib/libbackend_with_compiler.so",
                    "torch/lib/libaoti_custom_ops.so")  # fmt: skip
CUTS = DEV_TOOLS + COMPILER_ONLY


def default_excludes():
    """``CUTS`` and the build environment's packages outside the trainer's requirements."""
    from mlds.package.closure import foreign_modules

    return tuple(dict.fromkeys(CUTS + foreign_modules()))


@dataclass(frozen=True)
class FreezeConfig:
    """``dist``: where the bundle goes (``DIST/mlds-train/``); ``work``: PyInstaller's build
    directory; ``excludes``: modules left out; ``drop``: bundle paths (fnmatch) left out;
    ``strip``: PyInstaller's ``--strip``, measured only: it breaks numpy's auditwheel-patched
    OpenBLAS ("ELF load command address/offset not page-aligned"), see docs/packaging.md."""

    dist: str = "dist"
    work: str = os.path.join("build", "pyinstaller")
    excludes: tuple = field(default_factory=default_excludes)
    drop: tuple = TORCH_TEST_FILES
    strip: bool = False
    python: str = sys.executable

    def spec_options(self):
        """What the spec file reads (packaging/mlds-train.spec)."""
        return {"entry": ENTRY_SCRIPT, "repo": REPO_ROOT, "name": NAME, "excludes": list(self.excludes),
                "drop": list(self.drop), "strip": self.strip}  # fmt: skip


@dataclass(frozen=True)
class Bundle:
    directory: str
    executable: str
    build_seconds: float


def pyinstaller_command(config, options_path):
    """The PyInstaller command line for ``config``; the spec reads ``options_path``."""
    return [
        config.python, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
        "--distpath", os.path.abspath(config.dist), "--workpath", os.path.abspath(config.work),
        SPEC_FILE, "--", options_path,
    ]  # fmt: skip


def freeze(config, capture=True):
    """Build the bundle; returns its ``Bundle``. Raises ``FreezeError`` (with the log's tail when
    ``capture``; otherwise PyInstaller's log went to this process's stderr)."""
    started = time.monotonic()
    os.makedirs(config.work, exist_ok=True)
    options_path = os.path.abspath(os.path.join(config.work, "mlds-train-options.json"))
    with open(options_path, "w") as f:
        json.dump(config.spec_options(), f, indent=1)
    output = subprocess.PIPE if capture else None
    done = subprocess.run(pyinstaller_command(config, options_path), cwd=REPO_ROOT, stdout=output, stderr=output, text=True)
    if done.returncode != 0:
        raise FreezeError(f"PyInstaller failed (exit {done.returncode}):\n{(done.stderr or '')[-4000:]}")
    directory = os.path.join(os.path.abspath(config.dist), NAME)
    return Bundle(directory, os.path.join(directory, NAME), time.monotonic() - started)


class FreezeError(Exception):
    pass


def build_inputs_digest(config):
    """SHA-256 over what a build reads: the trainer's sources, this module, every installed
    distribution's version, the Python version and ``config``. Equal digests, equal inputs."""
    digest = hashlib.sha256(f"{sys.version}\n{config.spec_options()}\n".encode())
    for path in _source_files():
        digest.update(os.path.relpath(path, REPO_ROOT).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    versions = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    digest.update("\n".join(versions).encode())
    return digest.hexdigest()


def _source_files():
    files = [os.path.abspath(__file__)]
    for directory in SOURCE_DIRS:
        for root, dirs, names in os.walk(os.path.join(REPO_ROOT, directory)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files += [os.path.join(root, n) for n in sorted(names) if not n.endswith(".pyc")]
    return files
