"""The frozen trainer's size, build time, start-up time and peak memory, and what each cut saves.

Builds one bundle per rung of a ladder of cuts (``mlds.package.freeze``), each rung adding one
cut to the one before, and prints for each: build seconds, unpacked and zipped (deflate, level 6)
bytes, and the number of Python modules. With ``--startup`` it then times the last bundle built
(the default configuration, or ``--bundle``) against the trainer run from source, in the same
run, interleaved, median of ``--repeats``: ``--version``, and a tiny spec's first epoch (the first
``progress`` line on stderr); and the peak RSS of that whole training (``/usr/bin/time -v``).
Both sides run under ``env -i`` in a fresh directory (source: ``PYTHONPATH`` set to the checkout).

    python bench/bundle_size.py --out /tmp/bundles                  # the whole ladder (~3 min a rung)
    python bench/bundle_size.py --out /tmp/bundles --rungs default --startup
    python bench/bundle_size.py --bundle dist/mlds-train --startup  # an existing bundle only
"""

import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boinc_app.workunit_spec import write_spec  # noqa: E402
from mlds.package.contents import bundle_modules, unpacked_bytes  # noqa: E402
from mlds.package.wrapped import write_zip  # noqa: E402
from mlds.package.freeze import COMPILER_ONLY, CUTS, DEV_TOOLS, NAME, REPO_ROOT, FreezeConfig, freeze  # noqa: E402
from workgen.specs import make_spec, with_data  # noqa: E402

RUNGS = {
    "none": dict(excludes=(), drop=()),
    "dev-tools": dict(excludes=DEV_TOOLS, drop=()),
    "compiler-only": dict(excludes=DEV_TOOLS + COMPILER_ONLY, drop=()),
    "torch-tests": dict(excludes=CUTS),  # + torch's C++ test programs
    "default": dict(),  # + the build environment's packages outside the trainer's requirements: FreezeConfig's defaults
    "strip": dict(strip=True),
}


def build_rung(name, out):
    config = dataclasses.replace(FreezeConfig(dist=str(out / name / "dist"), work=str(out / name / "work")), **RUNGS[name])
    bundle = freeze(config)
    return Path(bundle.directory), bundle.build_seconds


def size_row(name, bundle, build_seconds):
    zipped = write_zip(str(bundle), str(bundle.parent / f"{NAME}.zip"))
    modules = bundle_modules(str(bundle), str(bundle / NAME))
    return {"rung": name, "build_s": round(build_seconds, 1), "unpacked_MB": round(unpacked_bytes(str(bundle)) / 1e6, 1),
            "zipped_MB": round(zipped / 1e6, 1), "modules": len(modules)}  # fmt: skip


def commands(bundle):
    """The frozen and the source trainer, each as an ``env -i`` command prefix."""
    source = ["env", "-i", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m", "boinc_app.main"]
    return {"frozen": ["env", "-i", str(bundle / NAME)], "source": source}


def seconds_to_version(command, cwd):
    started = time.monotonic()
    subprocess.run(command + ["--version"], cwd=cwd, check=True, capture_output=True)
    return time.monotonic() - started


def seconds_to_first_epoch(command, cwd):
    for stale in Path(cwd).glob("result.h5*"):
        stale.unlink()
    started = time.monotonic()
    process = subprocess.Popen(command + ["spec.json", "-o", "result.h5"], cwd=cwd, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("progress"):
            elapsed = time.monotonic() - started
            break
    process.stderr.read()
    assert process.wait() == 0
    return elapsed


def peak_rss_mb(command, cwd):
    for stale in Path(cwd).glob("result.h5*"):
        stale.unlink()
    done = subprocess.run(["/usr/bin/time", "-v"] + command + ["spec.json", "-o", "result.h5"], cwd=cwd, capture_output=True, text=True, check=True)
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024


def startup_rows(bundle, repeats):
    """Interleaved frozen/source timings; medians per kind and measure."""
    cwd = tempfile.mkdtemp(prefix="mlds-startup-")
    spec = with_data(make_spec("DS1", "SingleInvertMachine", networks=1, seed=1, max_epochs=2), train_size=1000)
    write_spec(spec, os.path.join(cwd, "spec.json"))
    samples = {kind: {"version_s": [], "first_epoch_s": []} for kind in commands(bundle)}
    for _ in range(repeats):
        for kind, command in commands(bundle).items():
            samples[kind]["version_s"].append(seconds_to_version(command, cwd))
            samples[kind]["first_epoch_s"].append(seconds_to_first_epoch(command, cwd))
    rows = []
    for kind, command in commands(bundle).items():
        row = {k: round(statistics.median(v), 2) for k, v in samples[kind].items()}
        rows.append({"run": kind, **row, "peak_rss_MB": round(peak_rss_mb(command, cwd), 1)})
    return rows


@click.command()
@click.option("--out", type=click.Path(file_okay=False), help="where the rungs' bundles go")
@click.option("--rungs", default=",".join(RUNGS), show_default=True, help="comma-separated rungs to build")
@click.option("--bundle", "existing", type=click.Path(file_okay=False, exists=True), help="measure this bundle, build nothing")
@click.option("--startup", is_flag=True, help="also time start-up and memory, frozen vs source")
@click.option("--repeats", default=5, show_default=True)
def main(out, rungs, existing, startup, repeats):
    bundle = Path(existing).resolve() if existing else None
    if bundle is not None:
        print(json.dumps(size_row("given", bundle, 0.0)), flush=True)
    else:
        for name in rungs.split(","):
            bundle, seconds = build_rung(name, Path(out).resolve())
            print(json.dumps(size_row(name, bundle, seconds)), flush=True)
    if startup:
        for row in startup_rows(bundle, repeats):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
