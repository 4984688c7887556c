"""The wrapped deployment (``mlds package app-version --wrapper``): BOINC's wrapper as the main
program, job.xml, the bundle as a deterministic zip; and BOINC's own wrapper (built from the
server tree's ``samples/wrapper``) unzipping it in a slot and running the trainer from job.xml.

Fast: the stand-in bundle of tests/conftest.py; tests/test_boinc_client_e2e.py
runs the frozen trainer wrapped under the real client.
"""

import os
import stat
import subprocess
import zipfile

import pytest
from click.testing import CliRunner
from lxml import etree

from mlds.boinc_local.build import wrapper_program
from mlds.cli import main
from mlds.package.appversion import AppVersionError, AppVersionLayout
from mlds.package.wrapped import CHECKPOINT_FILE, FRACTION_FILE, job_xml, lay_out_wrapped
from tests.conftest import PLATFORM  # the stand-in ``bundle`` fixture is conftest's too


@pytest.fixture
def fake_wrapper(tmp_path):
    path = tmp_path / "wrapper__x86_64-pc-linux-gnu"
    path.write_bytes(b"\x7fELF not really")
    return path


def lay(bundle, wrapper, apps, version="1.03"):  # noqa: F811
    return lay_out_wrapped(AppVersionLayout(PLATFORM, version, app="mlds_trainer"), str(bundle), str(wrapper), str(apps))


def test_layout_has_the_wrapper_as_main_program_and_job_xml_by_its_logical_name(bundle, fake_wrapper, tmp_path):  # noqa: F811
    done = lay(bundle, fake_wrapper, tmp_path / "apps")
    stem = f"mlds_trainer_1.03_{PLATFORM}"
    assert sorted(os.listdir(done.directory)) == sorted([f"{stem}_wrapper", f"{stem}_job.xml", f"{stem}.zip", "version.xml"])
    version = etree.parse(os.path.join(done.directory, "version.xml")).getroot()
    assert version.find("is_wrapper") is not None and version.findtext("api_version") == "7.20.0"
    files = version.findall("file")
    assert [(f.findtext("physical_name"), f.findtext("logical_name"), f.find("main_program") is not None) for f in files] == [
        (f"{stem}_wrapper", "mlds-wrapper", True), (f"{stem}_job.xml", "job.xml", False), (f"{stem}.zip", "mlds-train.zip", False),
    ]  # fmt: skip
    assert os.access(done.files[0], os.X_OK) and open(done.files[0], "rb").read() == fake_wrapper.read_bytes()
    job = etree.parse(done.files[1]).getroot()
    assert job.findtext("unzip_input/zipfilename") == "mlds-train.zip"
    (task,) = job.findall("task")
    assert task.findtext("application") == "mlds-train/mlds-train"
    assert task.findtext("command_line").split() == ["spec.json", "-o", "result.h5", "--wrapper-fraction-file", FRACTION_FILE,
                                                     "--wrapper-checkpoint-file", CHECKPOINT_FILE]  # fmt: skip
    assert (task.findtext("fraction_done_filename"), task.findtext("checkpoint_filename")) == (FRACTION_FILE, CHECKPOINT_FILE)
    assert etree.fromstring(job_xml("windows_x86_64")).findtext("task/application") == "mlds-train/mlds-train.exe"
    assert etree.fromstring(job_xml(arguments=("--version",))).findtext("task/command_line") == "--version"  # the benchmark's job


def test_zip_is_deterministic_and_keeps_the_trainer_executable(bundle, fake_wrapper, tmp_path):  # noqa: F811
    first = lay(bundle, fake_wrapper, tmp_path / "a")
    os.utime(bundle / "_internal" / "data.txt", (1, 1))  # other mtimes, same content
    second = lay(bundle, fake_wrapper, tmp_path / "b")
    assert open(first.files[2], "rb").read() == open(second.files[2], "rb").read()
    with zipfile.ZipFile(first.files[2]) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        assert archive.read("mlds-train/_internal/data.txt") == b"bundle data\n"
    assert modes["mlds-train/mlds-train"] == stat.S_IFREG | 0o755
    assert modes["mlds-train/_internal/data.txt"] == stat.S_IFREG | 0o644
    assert modes["mlds-train/_internal/"] == stat.S_IFDIR | 0o755
    assert all(name.startswith("mlds-train/") for name in modes)


def test_cli_lays_out_the_wrapped_version_and_refuses_an_existing_one(bundle, fake_wrapper, tmp_path):  # noqa: F811
    arguments = ["package", "app-version", "--platform", PLATFORM, "--version", "1.03", "--bundle", str(bundle),
                 "--out", str(tmp_path / "apps"), "--app", "mlds_trainer", "--wrapper", str(fake_wrapper)]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "every task's slot" in result.output
    again = CliRunner().invoke(main, arguments)
    assert again.exit_code == 1 and "never changes" in again.output
    with pytest.raises(AppVersionError, match="no executable mlds-train"):
        lay(tmp_path, fake_wrapper, tmp_path / "other")


@pytest.mark.boinc_server
def test_boincs_wrapper_unzips_the_bundle_in_the_slot_and_runs_the_trainer(bundle, boinc_server_build, tmp_path):  # noqa: F811
    """The wrapper standalone (no client): what a task's first start does in its slot."""
    done = lay(bundle, wrapper_program(boinc_server_build), tmp_path / "apps")
    slot = tmp_path / "slot"
    slot.mkdir()
    for path, logical in zip(done.files, ("mlds-wrapper", "job.xml", "mlds-train.zip")):
        (slot / logical).write_text(f"<soft_link>{path}</soft_link>\n")  # how the client links app files
    done_run = subprocess.run([str(done.files[0])], cwd=slot, capture_output=True, text=True, timeout=120)
    assert done_run.returncode == 0, done_run.stdout + done_run.stderr
    output = (slot / "stdout.txt").read_text() if (slot / "stdout.txt").exists() else done_run.stdout
    assert f"args: spec.json -o result.h5 --wrapper-fraction-file {FRACTION_FILE}" in output
    assert f"cwd: {slot}" in output and "internal: bundle data" in output  # ran from the unzipped tree, in the slot
    assert not (slot / "mlds-train.zip").exists()  # the wrapper deletes the zip's slot link after unzipping
    assert os.access(slot / "mlds-train" / "mlds-train", os.X_OK)
