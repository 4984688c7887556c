"""The wrapped deployment: BOINC's own ``wrapper`` as the main program, the frozen trainer its task.

The bootstrap (``mlds.package.appversion``) is the recommended deployment on Linux and macOS; this
one exists for the platforms without a POSIX ``sh`` and ``tar`` (Windows) and to measure the
choice under the real client (docs/packaging.md). The app version has three files:

- the wrapper binary (built from the BOINC tree's ``samples/wrapper``): the main program, which
  speaks the BOINC app protocol for the trainer and runs it as a child process;
- ``job.xml`` (logical name ``job.xml``, where the wrapper looks for it): ``<unzip_input>`` of the
  bundle's zip, then one task, the trainer, in wrapper mode (``boinc_app.wrapper_files``: it
  writes the fraction-done and checkpoint files named here, which the wrapper reads);
- the bundle as a zip (logical name ``mlds-train.zip``): at a task's first start the wrapper
  unzips it into the slot and deletes the slot's link to it. Every task unpacks its own copy, so
  ``rsc_disk_bound`` must hold the unpacked bundle (``slot_bytes``).

Measured under the real client (tests/test_boinc_client_e2e.py, docs/packaging.md), the wrapper on
Linux has two faults the bootstrap has not: a trainer killed by a signal (the OOM killer) fails
the task (the wrapper's EXIT_CHILD_FAILED) instead of restarting it from its checkpoint, and a task
aborted while suspended leaves its trainer stopped for good (the wrapper suspends with SIGSTOP; the
client kills the wrapper when the server acknowledges the aborted result, which can come before
the wrapper's SIGKILL 10 s after its SIGTERM, and the stopped trainer cannot act on the SIGTERM). Its option
``--use_tstp`` would avoid the second, but an app version can pass options to its main program
only through a plan class, and ``plan_class_spec.xml`` has no free ``cmdline``.

The zip is deterministic (sorted members, a fixed 1980 date, Unix modes 0755/0644 so the
unzipped trainer is executable; links stored as the files they point to, as zips do).
"""

import os
import shutil
import stat
import time
import zipfile

from lxml import etree

from boinc_app.filenames import RESULT_NAME, SPEC_NAME
from mlds.package.appversion import LaidOut, new_version_dir, version_xml_of
from mlds.package.contents import unpacked_bytes
from mlds.package.freeze import NAME

JOB_LOGICAL = "job.xml"
ZIP_LOGICAL = f"{NAME}.zip"
WRAPPER_LOGICAL = "mlds-wrapper"
FRACTION_FILE = "mlds_fraction_done"  # job.xml's <fraction_done_filename>, written by the trainer
CHECKPOINT_FILE = "mlds_checkpoint_marker"  # job.xml's <checkpoint_filename>, touched at each checkpoint
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


def names(layout, wrapper_path):
    """Physical names ``(wrapper, job.xml, zip)``; the wrapper keeps its suffix (``.exe`` on Windows)."""
    suffix = os.path.splitext(wrapper_path)[1]
    return f"{layout.stem}_wrapper{suffix}", f"{layout.stem}_job.xml", f"{layout.stem}.zip"


def job_xml(platform="x86_64-pc-linux-gnu", arguments=None):
    """The wrapper's job: unzip the bundle into the slot, then run the trainer in wrapper mode
    (or with ``arguments``, as a benchmark does)."""
    executable = f"{NAME}.exe" if platform.startswith("windows") else NAME
    root = etree.Element("job_desc")
    unzip = etree.SubElement(root, "unzip_input")
    etree.SubElement(unzip, "zipfilename").text = ZIP_LOGICAL
    task = etree.SubElement(root, "task")
    etree.SubElement(task, "application").text = f"{NAME}/{executable}"
    if arguments is None:
        arguments = (SPEC_NAME, "-o", RESULT_NAME, "--wrapper-fraction-file", FRACTION_FILE, "--wrapper-checkpoint-file", CHECKPOINT_FILE)
    etree.SubElement(task, "command_line").text = " ".join(arguments)
    etree.SubElement(task, "fraction_done_filename").text = FRACTION_FILE
    etree.SubElement(task, "checkpoint_filename").text = CHECKPOINT_FILE
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def write_zip(bundle_dir, path, compress_level=6):
    """``bundle_dir`` as a deterministic zip whose one top-level entry is ``mlds-train/``."""
    bundle_dir = os.path.abspath(bundle_dir)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=compress_level) as archive:
        for root, dirs, files in os.walk(bundle_dir):
            dirs.sort()
            relative = os.path.relpath(root, os.path.dirname(bundle_dir))
            archive.writestr(_info(relative + "/", 0o755 | stat.S_IFDIR, compress_level), b"")
            for name in sorted(files):
                full = os.path.join(root, name)
                mode = 0o755 if os.stat(full).st_mode & stat.S_IXUSR else 0o644
                info = _info(os.path.join(relative, name), mode | stat.S_IFREG, compress_level)
                with open(full, "rb") as source, archive.open(info, "w") as target:  # a link: the file it points to
                    shutil.copyfileobj(source, target, 1 << 20)  # streamed: libtorch_cpu.so alone is 415 MB
    return os.path.getsize(path)


def _info(name, mode, compress_level):
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.create_system = 3  # Unix: unzip restores external_attr's mode
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_STORED if name.endswith("/") else zipfile.ZIP_DEFLATED
    info._compresslevel = compress_level  # ZipFile.open(info, "w") takes the level from here (3.13 also: compress_level)
    return info


def lay_out_wrapped(layout, bundle_dir, wrapper_path, apps_dir):
    """Write the version's directory: the wrapper (main program), job.xml, the zip, version.xml."""
    directory = new_version_dir(layout, bundle_dir, apps_dir)
    wrapper_name, job_name, zip_name = names(layout, wrapper_path)
    wrapper = os.path.join(directory, wrapper_name)
    with open(wrapper_path, "rb") as source, open(wrapper, "wb") as target:
        target.write(source.read())
    os.chmod(wrapper, 0o755)
    job = os.path.join(directory, job_name)
    with open(job, "w") as handle:
        handle.write(job_xml(layout.platform))
    archive = os.path.join(directory, zip_name)
    started = time.monotonic()
    archive_bytes = write_zip(bundle_dir, archive, layout.compress_level)
    seconds = time.monotonic() - started
    files = ((wrapper_name, WRAPPER_LOGICAL, True), (job_name, JOB_LOGICAL, False), (zip_name, ZIP_LOGICAL, False))
    with open(os.path.join(directory, "version.xml"), "w") as handle:
        handle.write(version_xml_of(files, layout.api_version, is_wrapper=True))
    return LaidOut(directory, (wrapper, job, archive), unpacked_bytes(bundle_dir), archive_bytes, seconds)
