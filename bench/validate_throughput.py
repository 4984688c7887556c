"""Results validated per second per core, as BOINC's ``script_validator`` calls ``bin/mlds_validate``.

Honest DS1 results of 32 networks each (real trainer, 1 epoch on a small training set: validation
cost does not depend on how long a network trained) are placed in a project skeleton as BOINC
names uploads, with their specs in ``mlds/specs``. Two measurements in the same run:

- baseline: ``bin/mlds_validate`` with no validation service, a fresh Python and torch per result
  (what every call cost before the service);
- service: ``bin/mlds_validate`` asking ``bin/mlds_validate_service``, one call at a time (one
  core: script_validator runs its script sequentially), over ``--calls`` results.

Every verdict must be "valid". Prints both rates per core and their ratio (last line
``ratio: <service / baseline>``).

    python bench/validate_throughput.py [--results 20] [--calls 200] [--baseline-calls 10]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from boinc_app.standalone import SilentControl
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.workunit_spec import write_spec
from mlds.server.install import InstallConfig, install
from workgen.specs import make_spec, with_data

CONFIG_XML = """<boinc><config><db_name>none</db_name><db_user>none</db_user><host>bench</host></config><daemons/></boinc>\n"""


def make_project(root, results):
    (root / "bin").mkdir(parents=True)
    (root / "config.xml").write_text(CONFIG_XML)
    (root / "project.xml").write_text("<boinc/>\n")
    install(InstallConfig(str(root)))
    uploads = []
    for i in range(results):
        spec = with_data(make_spec("DS1", "ParityMachine", networks=32, first_index=32 * i, max_epochs=3), train_size=200)
        spec_path = root / "mlds" / "specs" / f"{spec.name}.json"
        write_spec(spec, spec_path)
        upload = root / "upload" / f"{spec.name}_0_r{1000 + i}_0"
        upload.parent.mkdir(exist_ok=True)
        run_trainer(TrainerConfig(str(spec_path), str(upload)), SilentControl)
        shutil.rmtree(str(upload) + ".checkpoint", ignore_errors=True)
        uploads.append(upload)
    return uploads


def validate_all(root, uploads, calls):
    started = time.perf_counter()
    for i in range(calls):
        done = subprocess.run([root / "bin" / "mlds_validate", uploads[i % len(uploads)], str(i + 1), "100.0"],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"call {i}: exit {done.returncode}: {done.stderr}")
    return calls / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=20, help="distinct results")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--baseline-calls", type=int, default=10)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "project"
        uploads = make_project(root, arguments.results)
        baseline = validate_all(root, uploads, arguments.baseline_calls)
        service = subprocess.Popen([root / "bin" / "mlds_validate_service"], cwd=root, stdout=subprocess.PIPE, text=True)
        assert "Starting" in service.stdout.readline()
        try:
            rate = validate_all(root, uploads, arguments.calls)
        finally:
            service.send_signal(subprocess.signal.SIGHUP)
            service.wait(timeout=60)
    print(f"results of 32 DS1 networks, {arguments.results} distinct; cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print(f"baseline (a fresh Python and torch per result): {baseline:.2f} results/s on one core ({arguments.baseline_calls} calls)")
    print(f"validation service: {rate:.2f} results/s on one core ({arguments.calls} calls)")
    print(f"ratio: {rate / baseline:.2f}")


if __name__ == "__main__":
    sys.exit(main())
