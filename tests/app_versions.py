"""Laid-out app versions of the session's frozen bundle, for the tests that deploy it to a real
client (tests/test_packaging_e2e.py through BOINC's server, tests/test_boinc_client_e2e.py through
the test server): ``mlds package app-version`` run once per session and layout.

Outside CI a laid-out ``apps/`` is cached next to the bundle (writing the 210 MB tar.gz or zip
takes ~25 s), keyed by the layout code, the options and the wrapper binary; under CI it is laid out
fresh. Callers copy or link its files before signing: the cache holds no signature.
"""

import hashlib
import shutil
from pathlib import Path

from click.testing import CliRunner
from lxml import etree

from mlds.cli import main
from mlds.package import appversion, wrapped
from tests.conftest import IN_CI


def lay_out_with_the_cli(bundle, apps_dir, app, version, platform, wrapper=None):
    arguments = ["package", "app-version", "--platform", platform, "--version", version, "--bundle", str(bundle),
                 "--out", str(apps_dir), "--app", app] + (["--wrapper", str(wrapper)] if wrapper else [])  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    return apps_dir


def laid_out_apps(bundle, tmp_path_factory, app, version, platform, wrapper=None):
    """``apps/`` holding ``APP/VERSION/PLATFORM/`` of ``bundle`` (the bootstrap, or with ``wrapper`` the wrapped deployment)."""
    if IN_CI:
        return lay_out_with_the_cli(bundle, tmp_path_factory.mktemp("laid_out") / "apps", app, version, platform, wrapper)
    digest = hashlib.sha256(Path(appversion.__file__).read_bytes() + Path(wrapped.__file__).read_bytes())
    digest.update(f"{app} {version} {platform}".encode() + (Path(wrapper).read_bytes() if wrapper else b""))
    entry = bundle.parents[1] / f"app-version-{digest.hexdigest()[:16]}"
    if not (entry / "apps").exists():
        partial = entry.with_name(entry.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        lay_out_with_the_cli(bundle, partial / "apps", app, version, platform, wrapper)
        partial.rename(entry)
    return entry / "apps"


def version_files(directory):
    """``[(path, logical name, is main program)]`` of the version in ``directory``, from its version.xml."""
    root = etree.parse(str(Path(directory) / "version.xml")).getroot()
    return [(Path(directory) / f.findtext("physical_name"), f.findtext("logical_name"), f.find("main_program") is not None)
            for f in root.findall("file")]  # fmt: skip
