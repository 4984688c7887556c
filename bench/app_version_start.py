"""How the frozen onedir bundle reaches a BOINC slot: start-up time and disk per task, two ways.

- **wrapper**: BOINC's own ``wrapper`` (built from ``samples/wrapper`` of the BOINC tree, pass
  ``--wrapper``) with ``<unzip_input>`` of the bundle's zip, as a task's first start does it:
  the wrapper unzips the whole bundle into the slot (``boinc_zip``), deletes the zip's slot
  entry, then runs ``mlds-train/mlds-train --version``. Every task does this in its own slot.
- **bootstrap**: the app version of ``mlds package app-version`` (``mlds.package.appversion``):
  its ``sh`` bootstrap started from a slot as the client starts it
  (``../../projects/P/<bootstrap>``); the first task of a version unpacks the ``.tar.gz`` into
  the project directory, later tasks only ``exec``.

Each round uses fresh directories under ``--tmp``; times are wall seconds to the end of
``mlds-train --version`` (the frozen trainer's start, torch imported, ~1.8 s on its own), median
of ``--repeats``. "Slot MB" is what the slot holds after the start (``du``-like, links not
followed), which is what the client compares with ``rsc_disk_bound``. The archives are read
warm from the page cache (just written); a volunteer's first start after the download is too.

    python bench/app_version_start.py --bundle dist/mlds-train \\
        --wrapper ~/.cache/mlds/boinc-server/builds/*/boinc/samples/wrapper/wrapper__x86_64-pc-linux-gnu
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlds.package.appversion import AppVersionLayout, lay_out  # noqa: E402
from mlds.package.contents import unpacked_bytes  # noqa: E402
from mlds.package.freeze import NAME  # noqa: E402
from mlds.package.wrapped import ZIP_LOGICAL, job_xml, write_zip  # noqa: E402


def timed(command, cwd):
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return seconds, done


def wrapper_round(wrapper, zip_path, root):
    slot = root / "slots" / "0"
    slot.mkdir(parents=True)
    shutil.copy(wrapper, slot / "wrapper")
    (slot / "job.xml").write_text(job_xml(arguments=("--version",)))  # the shipped job, but --version
    os.symlink(zip_path, slot / ZIP_LOGICAL)  # an app file's slot entry points into the project directory
    seconds, _ = timed(["./wrapper"], slot)
    return seconds, unpacked_bytes(slot) - os.path.getsize(slot / "wrapper")


def bootstrap_rounds(version_dir, root):
    """(first task's seconds, a later task's seconds, slot bytes, project bytes)."""
    project = root / "projects" / "127.0.0.1_mlds"
    project.mkdir(parents=True)
    for name in os.listdir(version_dir):
        if name != "version.xml":
            os.symlink(version_dir / name, project / name)  # the downloaded app files
    bootstrap = next(n for n in os.listdir(version_dir) if n.endswith(".sh"))
    seconds = []
    for slot_number in (0, 1):
        slot = root / "slots" / str(slot_number)
        slot.mkdir(parents=True)
        took, done = timed([f"../../projects/{project.name}/{bootstrap}", "--version"], slot)
        seconds.append(took)
    return seconds[0], seconds[1], unpacked_bytes(root / "slots" / "1"), unpacked_bytes(project)


@click.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--wrapper", type=click.Path(exists=True, dir_okay=False), help="BOINC's wrapper binary (samples/wrapper)")
@click.option("--repeats", default=3, show_default=True)
@click.option("--tmp", default=None, help="where the rounds run (default: a temporary directory)")
def main(bundle, wrapper, repeats, tmp):
    work = Path(tempfile.mkdtemp(prefix="app-version-start-", dir=tmp))
    try:
        bundle = Path(bundle).resolve()
        print(f"bundle {bundle}: {unpacked_bytes(bundle) / 1e6:.1f} MB unpacked")
        started = time.monotonic()
        laid = lay_out(AppVersionLayout("x86_64-pc-linux-gnu", "1.00"), str(bundle), str(work / "apps"))
        print(f"tar.gz (level 6): {laid.archive_bytes / 1e6:.1f} MB, written in {time.monotonic() - started:.1f} s")
        rows = {}
        alone = []
        for _ in range(repeats):
            alone.append(timed([str(bundle / NAME), "--version"], work)[0])
        rows["(the unpacked trainer alone, for reference)"] = (statistics.median(alone), 0, 0)
        if wrapper:
            zip_path = work / ZIP_LOGICAL
            started = time.monotonic()
            size = write_zip(str(bundle), str(zip_path))  # the zip mlds package app-version --wrapper ships
            print(f"zip (deflate 6): {size / 1e6:.1f} MB, written in {time.monotonic() - started:.1f} s")
            runs = [wrapper_round(Path(wrapper).resolve(), zip_path, work / f"w{i}") for i in range(repeats)]
            for i in range(repeats):
                shutil.rmtree(work / f"w{i}")
            rows["wrapper + unzip_input, every task"] = (statistics.median(r[0] for r in runs), runs[0][1], size)
        runs = []
        for i in range(repeats):
            runs.append(bootstrap_rounds(Path(laid.directory), work / f"b{i}"))
            shutil.rmtree(work / f"b{i}")
        project = runs[0][3] + laid.archive_bytes  # the unpacked tree, and the downloaded archive
        rows["bootstrap, first task of a version"] = (statistics.median(r[0] for r in runs), runs[0][2], project)
        rows["bootstrap, every later task"] = (statistics.median(r[1] for r in runs), runs[0][2], project)
        print("\n| deployment | start to --version s | slot MB per task | project dir MB (once per version) |")
        print("|---|---:|---:|---:|")
        for what, (seconds, slot, project) in rows.items():
            print(f"| {what} | {seconds:.2f} | {slot / 1e6:.1f} | {project / 1e6:.1f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
