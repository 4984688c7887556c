"""Apps and app versions in a local BOINC project, the way an administrator adds them.

A client runs only signed app files from a project it reached over HTTP, and pins the first code
signing key it sees; so app versions go through BOINC's own tools, never straight into the
database: ``<app>`` in ``project.xml`` and ``bin/xadd``, then the files in
``apps/APP/X.YY/PLATFORM[__PLAN]/`` with a ``version.xml`` and ``bin/update_versions --noconfirm``,
which signs each file with the project's ``keys/code_sign_private`` and moves it into ``download/``.

A program that speaks the shared-memory protocol but is not linked with libboinc_api (a Python or
frozen app) must state its ``api_version``: ``update_versions`` looks for the string in the binary
and would not find it.
"""

import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from lxml import etree

from mlds.boinc_local.errors import BoincLocalError

LINUX_X86_64 = "x86_64-pc-linux-gnu"
CLIENT_PLATFORMS = {"x86_64": LINUX_X86_64, "aarch64": "aarch64-unknown-linux-gnu", "armv7l": "arm-unknown-linux-gnueabihf"}


def local_platform():
    """The BOINC platform name a Linux client on this machine asks for."""
    machine = platform.machine()
    if machine not in CLIENT_PLATFORMS:
        raise BoincLocalError(f"no BOINC platform name known for machine type {machine!r}")
    return CLIENT_PLATFORMS[machine]


@dataclass(frozen=True)
class AppVersion:
    """One app version: ``files`` are paths copied in, ``main_program`` is one of their names."""

    app: str
    version: str  # "1.00": version_num 100
    files: tuple
    main_program: str
    platform: str = field(default_factory=local_platform)  # this machine's, by default
    plan_class: str = ""
    api_version: str = ""
    logical_names: dict = field(default_factory=dict)  # physical name -> logical name

    @property
    def directory_name(self):
        return f"{self.platform}__{self.plan_class}" if self.plan_class else self.platform


def add_app(project, name, user_friendly_name=None):
    """Declare the app in project.xml and run ``bin/xadd`` (creates the ``app`` row)."""
    tree = etree.parse(str(project.project_xml))
    if not any(app.findtext("name") == name for app in tree.getroot().iterfind("app")):
        app = etree.SubElement(tree.getroot(), "app")
        etree.SubElement(app, "name").text = name
        etree.SubElement(app, "user_friendly_name").text = user_friendly_name or name
        project.write_xml(tree, project.project_xml)
    project.run_bin("xadd")


def version_xml(version):
    parts = ["<version>"]
    for path in map(Path, version.files):
        parts.append("  <file>")
        parts.append(f"    <physical_name>{escape(path.name)}</physical_name>")
        if path.name == version.main_program:
            parts.append("    <main_program/>")
        if path.name in version.logical_names:
            parts.append(f"    <logical_name>{escape(version.logical_names[path.name])}</logical_name>")
        parts.append("  </file>")
    if version.api_version:
        parts.append(f"  <api_version>{escape(version.api_version)}</api_version>")
    parts.append("</version>\n")
    return "\n".join(parts)


def add_app_version(project, version):
    """Lay out the version's directory and run ``bin/update_versions --noconfirm`` (signs, stages)."""
    names = [Path(f).name for f in version.files]
    if version.main_program not in names:
        raise BoincLocalError(f"main program {version.main_program!r} is not one of the files {names}")
    directory = project.root / "apps" / version.app / version.version / version.directory_name
    project.service_user.make_dir(directory)
    for path in map(Path, version.files):
        target = directory / path.name
        shutil.copyfile(path, target)
        target.chmod(0o755 if path.name == version.main_program else 0o644)
        project.service_user.chown(target)
    project.write_file(directory.relative_to(project.root) / "version.xml", version_xml(version))
    return project.run_bin("update_versions", "--noconfirm")
