"""An app version directory for BOINC's ``bin/update_versions``: the frozen trainer, deployed as a
small bootstrap plus one archive.

BOINC app files form a flat list, and the client starts the main program from the project
directory (``../../projects/<url>/<physical name>``), while a PyInstaller onedir bundle is a tree
(``mlds-train`` plus ``_internal/``, about 2,500 files). How the tree reaches the slot:

- **the bootstrap (chosen)**: the main program is a POSIX ``sh`` script (``bootstrap_script``).
  It unpacks the bundle's ``.tar.gz`` once per app version into the project directory, finishing
  with an atomic step (the unpacked tree is renamed to a unique name, then a symlink to it is
  created, which fails if another task won the race), and ``exec``s the frozen trainer with the
  slot as its working directory. Every later task of that version only ``exec``s: no unpacking,
  nothing of the bundle in the slot, so ``rsc_disk_bound`` stays what the workunit's own files
  need. It also removes what earlier bootstraps left: half-unpacked trees of dead processes, and
  unpacked versions whose archive the client has deleted (it deletes an app version's files only
  when no task uses them any more).
- BOINC's ``wrapper`` with ``<unzip_input>``: unzips the whole bundle into every task's slot,
  at every task's first start: measured slower per task and 660 MB of slot disk per task
  (docs/packaging.md, ``bench/app_version_start.py``).

Physical names carry the app, version and platform directory (``download/`` is flat across the
project); logical names (the names in the slot) are fixed: ``mlds-boot``, ``mlds-train.tar.gz``.
The archive is deterministic (sorted members, owner 0, mtime 0, gzip header mtime 0): equal
bundles give equal archives, and equal md5s for the client.
"""

import gzip
import os
import re
import shlex
import stat
import tarfile
import time
from dataclasses import dataclass

from lxml import etree

from boinc_app.filenames import RESULT_NAME, SPEC_NAME
from mlds.package.contents import unpacked_bytes
from mlds.package.freeze import NAME

API_VERSION = "7.20.0"  # the shared-memory (mmap) protocol needs >= 6; update_versions cannot find it in a frozen binary
TRAINER_ARGS = (SPEC_NAME, "-o", RESULT_NAME)  # the workunit's logical names: spec.json -o result.h5
BOOTSTRAP_LOGICAL = "mlds-boot"
ARCHIVE_LOGICAL = f"{NAME}.tar.gz"
VERSION_RE = re.compile(r"^(\d+)\.(\d\d)$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AppVersionError(Exception):
    pass


def version_num(version):
    """BOINC's version number of ``"X.YY"`` (``"1.02"`` -> 102)."""
    match = VERSION_RE.match(version)
    if not match:
        raise AppVersionError(f"version {version!r}: must be X.YY (update_versions reads apps/APP/X.YY/)")
    return int(match.group(1)) * 100 + int(match.group(2))


@dataclass(frozen=True)
class AppVersionLayout:
    """What ``mlds package app-version`` lays out."""

    platform: str  # e.g. x86_64-pc-linux-gnu
    version: str  # X.YY
    app: str = "mlds"
    plan_class: str = ""
    api_version: str = API_VERSION
    trainer_args: tuple = TRAINER_ARGS
    compress_level: int = 6

    def __post_init__(self):
        version_num(self.version)
        for what in ("platform", "app") + (("plan_class",) if self.plan_class else ()):
            if not NAME_RE.match(getattr(self, what)) or "__" in getattr(self, what):
                raise AppVersionError(f"{what} {getattr(self, what)!r}: letters, digits, '.', '_', '-' only, no '__'")

    @property
    def directory_name(self):
        return f"{self.platform}__{self.plan_class}" if self.plan_class else self.platform

    @property
    def stem(self):
        """The unique part of the physical names: ``APP_X.YY_PLATFORM[__PLAN]``."""
        return f"{self.app}_{self.version}_{self.directory_name}"

    @property
    def bootstrap_name(self):
        return f"{self.stem}.sh"

    @property
    def archive_name(self):
        return f"{self.stem}.tar.gz"

    @property
    def unpacked_name(self):
        """Where the bootstrap unpacks to, in the project directory (a symlink to the tree)."""
        return f"{self.stem}.unpacked"

    def relative_dir(self):
        return os.path.join(self.app, self.version, self.directory_name)


@dataclass(frozen=True)
class LaidOut:
    directory: str
    files: tuple  # paths of the app version's files (not version.xml)
    unpacked_bytes: int
    archive_bytes: int
    archive_seconds: float


def write_archive(bundle_dir, path, compress_level=6):
    """``bundle_dir`` as a deterministic ``.tar.gz`` whose one top-level entry is ``mlds-train/``."""
    bundle_dir = os.path.abspath(bundle_dir)
    top = os.path.basename(bundle_dir)

    def entries():
        yield bundle_dir, top
        for root, dirs, files in os.walk(bundle_dir):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                yield full, os.path.join(top, os.path.relpath(full, bundle_dir))

    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compress_level, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for full, name in entries():
                info = archive.gettarinfo(full, name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o755 if info.isdir() or (info.mode & stat.S_IXUSR) else 0o644
                if info.isreg():
                    with open(full, "rb") as handle:
                        archive.addfile(info, handle)
                else:
                    archive.addfile(info)
    return os.path.getsize(path)


BOOTSTRAP = r"""#!/bin/sh
# mlds bootstrap of app version {version} ({directory}), written by `mlds package app-version`.
# The BOINC client starts it in the task's slot as ../../projects/<project>/{bootstrap}.
# It unpacks the frozen trainer ({archive}) once per app version into the project directory
# and execs it; later tasks of this version only exec.
archive={archive}
unpacked={unpacked}
project=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$project/$archive" ] && [ -f init_data.xml ]; then
    project=$(sed -n 's:.*<project_dir>\(.*\)</project_dir>.*:\1:p' init_data.xml | head -n 1)
fi
trainer="$project/$unpacked/{name}/{name}"
say() {{ echo "mlds-boot: $*" >&2; }}
if [ ! -x "$trainer" ]; then
    # tidy up: trees of unpacks that died, and unpacked versions whose archive the client deleted
    for partial in "$project"/*.unpacked.*.partial; do
        [ -d "$partial" ] || continue
        pid=${{partial%.partial}}; pid=${{pid##*.}}
        kill -0 "$pid" 2>/dev/null || rm -rf "$partial"
    done
    for link in "$project"/*.unpacked; do
        [ -L "$link" ] || continue
        [ -f "${{link%.unpacked}}.tar.gz" ] && continue
        tree=$(readlink "$link"); rm -f "$link"; rm -rf "$project/$tree"
    done
    started=$(date +%s)
    partial="$project/$unpacked.$$.partial"
    rm -rf "$partial"
    if ! mkdir "$partial" || ! tar -xzf "$project/$archive" -C "$partial"; then
        rm -rf "$partial"
        say "cannot unpack $project/$archive (disk full?)"
        exit 1
    fi
    mv "$partial" "$project/$unpacked.$$" || exit 1
    if ln -sn "$unpacked.$$" "$project/$unpacked" 2>/dev/null; then  # -n: never into the winner's tree
        say "unpacked $archive in $(( $(date +%s) - started )) s"
    else
        rm -rf "$project/$unpacked.$$"  # another task unpacked it first
    fi
fi
exec "$trainer" {trainer_args} "$@"
"""


def bootstrap_script(layout):
    return BOOTSTRAP.format(
        version=layout.version, directory=layout.directory_name, bootstrap=layout.bootstrap_name, name=NAME,
        archive=shlex.quote(layout.archive_name), unpacked=shlex.quote(layout.unpacked_name),
        trainer_args=" ".join(shlex.quote(a) for a in layout.trainer_args),
    )  # fmt: skip


def version_xml(layout):
    """``version.xml``: the bootstrap is the main program; both files get their logical names.
    No ``copy_file``: the bootstrap reads the archive in the project directory, where it is."""
    return version_xml_of(((layout.bootstrap_name, BOOTSTRAP_LOGICAL, True), (layout.archive_name, ARCHIVE_LOGICAL, False)), layout.api_version)


def version_xml_of(files, api_version, is_wrapper=False):
    """``version.xml`` of ``files``, ``(physical name, logical name, is the main program)`` each;
    ``is_wrapper``: the main program is BOINC's wrapper."""
    root = etree.Element("version")
    for physical, logical, main in files:
        element = etree.SubElement(root, "file")
        etree.SubElement(element, "physical_name").text = physical
        etree.SubElement(element, "logical_name").text = logical
        if main:
            etree.SubElement(element, "main_program")
    etree.SubElement(root, "api_version").text = api_version
    if is_wrapper:
        etree.SubElement(root, "is_wrapper")
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def lay_out(layout, bundle_dir, apps_dir):
    """Write ``APPS_DIR/<app>/<X.YY>/<platform>[__<plan>]/``: bootstrap, archive, version.xml."""
    directory = new_version_dir(layout, bundle_dir, apps_dir)
    bootstrap = os.path.join(directory, layout.bootstrap_name)
    with open(bootstrap, "w") as handle:
        handle.write(bootstrap_script(layout))
    os.chmod(bootstrap, 0o755)
    archive = os.path.join(directory, layout.archive_name)
    started = time.monotonic()
    archive_bytes = write_archive(bundle_dir, archive, layout.compress_level)
    seconds = time.monotonic() - started
    os.chmod(archive, 0o644)
    with open(os.path.join(directory, "version.xml"), "w") as handle:
        handle.write(version_xml(layout))
    return LaidOut(directory, (bootstrap, archive), unpacked_bytes(bundle_dir), archive_bytes, seconds)


def new_version_dir(layout, bundle_dir, apps_dir):
    """The version's directory, made empty; refuses a bundle without the trainer and a version laid out before."""
    executable = os.path.join(bundle_dir, NAME)
    if not os.access(executable, os.X_OK):
        raise AppVersionError(f"{bundle_dir}: no executable {NAME} (a bundle of `mlds package build`, e.g. dist/{NAME})")
    directory = os.path.join(apps_dir, layout.relative_dir())
    if os.path.exists(directory) and os.listdir(directory):
        raise AppVersionError(f"{directory} exists and is not empty: a released app version never changes; use a new version")
    os.makedirs(directory, exist_ok=True)
    return directory
