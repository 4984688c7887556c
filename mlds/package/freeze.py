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
- **cuts** (``CUTS``): modules the hook collects that the trainer cannot import; each one's saving
  is measured in docs/packaging.md, and the frozen tests pass without them.
"""

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import time
from dataclasses import dataclass

NAME = "mlds-train"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY_SCRIPT = os.path.join(REPO_ROOT, "packaging", "mlds_train.py")

# The sources a bundle is built from (besides the installed distributions).
SOURCE_DIRS = ("boinc_app", "machines", "packaging")

# Collected only because torch's hook collects every torch submodule, some of which import them
# optionally; the trainer reaches none of them (see docs/packaging.md for what each saves).
CUTS = ()


@dataclass(frozen=True)
class FreezeConfig:
    """``dist``: where the bundle goes (``DIST/mlds-train/``); ``work``: PyInstaller's build cache."""

    dist: str = "dist"
    work: str = os.path.join("build", "pyinstaller")
    excludes: tuple = CUTS
    strip: bool = False
    python: str = sys.executable


@dataclass(frozen=True)
class Bundle:
    directory: str
    executable: str
    build_seconds: float


def pyinstaller_command(config):
    """The PyInstaller command line for ``config`` (the generated spec goes into the work dir)."""
    command = [
        config.python, "-m", "PyInstaller", "--noconfirm", "--clean", "--onedir", "--console",
        "--name", NAME, "--distpath", os.path.abspath(config.dist), "--workpath", os.path.abspath(config.work),
        "--specpath", os.path.abspath(config.work), "--paths", REPO_ROOT, "--log-level", "WARN",
    ]  # fmt: skip
    for module in config.excludes:
        command += ["--exclude-module", module]
    if config.strip:
        command.append("--strip")
    return command + [ENTRY_SCRIPT]


def freeze(config, capture=True):
    """Build the bundle; returns its ``Bundle``. Raises ``FreezeError`` (with the log's tail when
    ``capture``; otherwise PyInstaller's log went to this process's stderr)."""
    started = time.monotonic()
    output = subprocess.PIPE if capture else None
    done = subprocess.run(pyinstaller_command(config), cwd=REPO_ROOT, stdout=output, stderr=output, text=True)
    if done.returncode != 0:
        raise FreezeError(f"PyInstaller failed (exit {done.returncode}):\n{(done.stderr or '')[-4000:]}")
    directory = os.path.join(os.path.abspath(config.dist), NAME)
    return Bundle(directory, os.path.join(directory, NAME), time.monotonic() - started)


class FreezeError(Exception):
    pass


def build_inputs_digest(config):
    """SHA-256 over what a build reads: the trainer's sources, this module, every installed
    distribution's version, the Python version and ``config``. Equal digests, equal inputs."""
    digest = hashlib.sha256(f"{sys.version}\n{config.excludes}\n{config.strip}\n".encode())
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
