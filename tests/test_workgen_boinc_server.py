"""The work generator inside a real BOINC project (BOINC's own ``create_work``, transitioner and
MariaDB schema, ``make_project``'s layout), installed with ``mlds server install``.

Queue arithmetic (low and high water marks, counted from BOINC's tables), follow-ups and re-issues
from mlds's records, the estimates ``create_work`` stores, the daemon conventions (SIGHUP,
``stop_daemons``, BOINC's log format), and kill -9 of the daemon at random moments: afterwards
every network of every task is covered by exactly one first workunit.
"""

import os
import random
import re
import shutil
import signal
import sys
import time

import pytest

from boinc_app.workunit_spec import read_spec
from mlds.server.state import ServerState, list_records, write_record
from workgen.bounds import workunit_bounds
from workgen.specs import parse_workunit_name

pytestmark = [pytest.mark.boinc_server, pytest.mark.mariadb, pytest.mark.slow]

APP = "mlds_trainer"
SMALL = ["--networks-per-workunit", "8", "--max-epochs", "4", "--epoch-budget", "2"]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{4} UTC \[(CRITICAL|WARNING|NORMAL|DEBUG)\] ")


def mlds_as_owner(project, *arguments, check=True):
    return project.as_service_user([sys.executable, "-m", "mlds.cli", *arguments], check=check)


@pytest.fixture
def installed(boinc_project):
    """The project with mlds installed by its owner and the app added (``bin/xadd``)."""
    done = boinc_project.as_service_user([sys.executable, "-c", "import mlds.cli"], check=False)
    if done.returncode != 0:
        pytest.fail(f"the service user cannot run this Python with mlds ({sys.executable}); make its directories "
                    f"world-traversable (chmod o+x), as .ci/run does: {done.stderr[-500:]}")  # fmt: skip
    mlds_as_owner(boinc_project, "server", "install", str(boinc_project.root), "--merge-config")
    boinc_project.run_bin("xadd")
    boinc_project.service_user.make_dir(boinc_project.tmp_dir)  # bin/start makes it; the tests call daemons directly
    return boinc_project


def workgen(project, *options, check=True):
    argv = [project.bin_dir / "mlds_workgen", "--app", APP, "--dataset", "DS1", *SMALL, "--one_pass", "-d", "4", *options]
    return project.as_service_user(argv, cwd=project.tmp_dir, check=check)


def workunits(project):
    return {name: (est, bound, memory, disk) for name, est, bound, memory, disk in project.query(
        "SELECT name, rsc_fpops_est, rsc_fpops_bound, rsc_memory_bound, rsc_disk_bound FROM workunit")}  # fmt: skip


def test_the_cushion_is_kept_between_the_water_marks(installed):
    water = ["--networks", "64", "--low-water", "3", "--high-water", "5"]
    done = workgen(installed, *water)
    assert all(LOG_LINE.match(line) for line in done.stdout.splitlines()), done.stdout
    first = workunits(installed)
    assert sorted(first) == sorted(f"DS1-{m}-n000000-k8-c0" for m in
                                   ("SingleDirectMachine", "SingleInvertMachine", "SimpleXORMachine", "ParityMachine", "EightBitMachine"))  # fmt: skip
    workgen(installed, *water)  # cushion 5 (no results yet: the transitioner has not run): nothing
    assert workunits(installed) == first
    installed.run_bin("transitioner", "--one_pass")
    assert installed.query("SELECT COUNT(*) FROM result WHERE server_state = 2")[0][0] == 5
    workgen(installed, *water)
    assert workunits(installed) == first  # 5 unsent results: still nothing
    installed.query("UPDATE result SET server_state = 4 ORDER BY id LIMIT 3")  # three were sent
    workgen(installed, *water)
    names = set(workunits(installed)) - set(first)
    assert names == {f"DS1-{m}-n000008-k8-c0" for m in ("SingleDirectMachine", "SingleInvertMachine", "SimpleXORMachine")}


def test_estimates_come_from_the_spec_not_from_templates(installed):
    workgen(installed, "--networks", "8", "--low-water", "1", "--high-water", "1")
    (name, (est, bound, memory, disk)), = workunits(installed).items()
    spec = read_spec(ServerState(str(installed.root)).spec_path(name))
    expected = workunit_bounds(spec)
    assert (est, bound, memory, disk) == pytest.approx(
        (expected["rsc_fpops_est"], expected["rsc_fpops_bound"], expected["rsc_memory_bound"], expected["rsc_disk_bound"]))
    assert est != 3.6e12 and disk != 1e9  # BOINC's defaults
    counts = installed.query("SELECT min_quorum, target_nresults, max_error_results, max_total_results FROM workunit")
    assert counts == ((1, 1, 3, 5),)  # the template's: BOINC's default of 1 fails a workunit at its first bad result
    staged = installed.run_bin("dir_hier_path", f"{name}.json").stdout.split()[-1]
    assert open(staged, "rb").read() == open(ServerState(str(installed.root)).spec_path(name), "rb").read()


def test_follow_ups_and_reissues_are_created_whatever_the_cushion(installed, unfinished_result):
    from assimilator.boinc_script import main as assimilate

    state = ServerState(str(installed.root))
    spec_path, result_path = unfinished_result
    spec = read_spec(spec_path)
    shutil.copyfile(spec_path, state.spec_path(spec.name))
    upload = installed.root / "upload" / f"{spec.name}_0_r1_0"
    shutil.copyfile(result_path, upload)
    assert assimilate(state.project_root, ["1", str(upload)]) == 0  # records the follow-up
    write_record(state.failed_path(spec.name), {"workunit": spec.name, "reason": "error mask 2"})
    installed.service_user.chown_tree(state.root)
    workgen(installed, "--networks", "8", "--low-water", "0", "--high-water", "0")
    names = set(workunits(installed))
    follow, again = f"{spec.name[:-3]}-c1", f"{spec.name}-r1"
    assert names == {follow, again}
    assert list_records(state.followups_dir) == [] and list_records(state.failed_dir) == []
    xml = installed.query("SELECT xml_doc FROM workunit WHERE name = %s", follow)[0][0]
    xml = xml.decode() if isinstance(xml, bytes) else xml
    assert xml.count("<file_info>") == 2 and "checkpoint.h5" in xml and f"{follow}.checkpoint.h5" in xml
    staged = installed.run_bin("dir_hier_path", f"{follow}.checkpoint.h5").stdout.split()[-1]
    assert open(staged, "rb").read() == upload.read_bytes()


def test_the_daemon_stops_on_sighup_and_on_stop_daemons(installed):
    argv = [installed.bin_dir / "mlds_workgen", "--app", APP, *SMALL, "--networks", "8", "--sleep_interval", "30"]
    for stop in ("sighup", "stop_daemons"):
        process = installed.popen_as_service_user(argv, cwd=installed.tmp_dir, stdout=__import__("subprocess").PIPE, text=True)
        first = process.stdout.readline()  # "Starting ..." is logged before the first pass
        assert LOG_LINE.match(first) and "Starting" in first
        deadline = time.monotonic() + 60
        while "cushion" not in (line := process.stdout.readline()) and time.monotonic() < deadline:
            pass
        assert "cushion" in line  # the first pass is done; it now sleeps 30 s
        if stop == "sighup":
            process.send_signal(signal.SIGHUP)
        else:
            (installed.root / "stop_daemons").write_text("")
            process.send_signal(signal.SIGHUP)  # wakes the sleep at once, as bin/stop does
        assert process.wait(timeout=20) == 0
        assert "Quitting" in process.stdout.read()
        (installed.root / "stop_daemons").unlink(missing_ok=True)


def test_kill_9_at_any_moment_creates_no_duplicate_and_loses_no_network(installed):
    target, size = 96, 8
    argv = [installed.bin_dir / "mlds_workgen", "--app", APP, "--dataset", "DS1", *SMALL, "--networks", str(target),
            "--low-water", "1000", "--high-water", "1000", "--sleep_interval", "0.1"]  # fmt: skip
    chance = random.Random(16)
    for _ in range(8):
        process = installed.popen_as_service_user(argv, cwd=installed.tmp_dir)
        time.sleep(chance.uniform(0.5, 4.0))  # a random moment, not a synchronisation
        process.send_signal(signal.SIGKILL)
        process.wait()
    workgen(installed, "--networks", str(target), "--low-water", "1000", "--high-water", "1000")
    covered = {}
    for name in workunits(installed):
        parts = parse_workunit_name(name)
        covered.setdefault(parts.task, []).append((parts.first_index, parts.count))
    assert len(covered) == 5
    for task, ranges in covered.items():
        assert sorted(ranges) == [(first, size) for first in range(0, target, size)], task
    state = ServerState(str(installed.root))
    assert sorted(list_records(state.specs_dir)) == sorted(workunits(installed))
    assert os.listdir(state.staging_dir) == [] or all(n.endswith((".json", ".h5")) for n in os.listdir(state.staging_dir))


def test_a_create_work_that_creates_nothing_is_logged_not_counted(installed):
    (installed.root / "templates" / "mlds_trainer_out").unlink()  # create_work --stdin then exits 0 having made nothing
    done = workgen(installed, "--networks", "8", "--low-water", "1", "--high-water", "1")
    assert workunits(installed) == {}
    assert "[CRITICAL] create_work did not create 1 workunit(s)" in done.stdout and "mlds_trainer_out" in done.stdout
    assert "created nothing" in done.stdout
