"""mlds deployed into a real BOINC project, the whole way, with the real client.

``mlds server install`` into a ``make_project`` project (BOINC built from its own source), the
daemons started with ``bin/start``: the work generator creates DS1 work through the real
``create_work``; Debian's ``boinc-client`` trains it (the trainer from source, behind a launcher,
until the frozen trainer of the packaging step); the real transitioner, ``script_validator`` and
``script_assimilator`` call mlds's scripts; follow-ups carry networks that need more epochs; the
server-side publish step builds a release that ``mlds.load_dataset`` reads.

On the way: the first task the client runs uploads a truncated result through the real upload
handler (the launcher is hostile once): it must be INVALID, BOINC must send the work again, and
every daemon must keep running; kill -9 of the work generator and of the assimilator in the middle
of the run must lose and duplicate nothing.
"""

import os
import signal
import sys
import time

import pytest

import mlds
from assimilator.store import DatasetStore
from mlds.boinc_local.apps import AppVersion, add_app_version
from mlds.boinc_local.project import process_alive
from mlds.boinc_local.waiting import tail, wait_until
from mlds.boinc_local.errors import ServiceError
from mlds.server.state import ServerState, list_records
from workgen.specs import parse_workunit_name

pytestmark = [pytest.mark.boinc_server, pytest.mark.boinc_client, pytest.mark.mariadb, pytest.mark.slow]

APP = "mlds_trainer"
MACHINES = ("SingleDirectMachine", "SingleInvertMachine")
WORK = ["--networks", "2", "--networks-per-workunit", "2", "--max-epochs", "3", "--epoch-budget", "1",
        "--low-water", "1", "--high-water", "2", "--sleep_interval", "1", *(w for m in MACHINES for w in ("--machine", m))]  # fmt: skip
PUBLISH = ["--networks", "2", *(w for m in MACHINES for w in ("--machine", m))]
VALID, INVALID, ASSIMILATED = 1, 2, 2

LAUNCHER = """#!/bin/sh
# The mlds trainer from source as the app's main program; hostile once: the first task that
# finishes has its result truncated before the client uploads it.
{python} -m boinc_app.main spec.json -o result.h5 "$@"
code=$?
if [ "$code" -eq 0 ] && mkdir {marker} 2>/dev/null; then
    out=$({python} -c "from boinc_app.filenames import resolve; print(resolve('result.h5'))")
    truncate -s 4000 "$out"
fi
exit $code
"""


@pytest.fixture
def deployed(boinc_project, tmp_path):
    project = boinc_project
    done = project.as_service_user([sys.executable, "-c", "import mlds.cli"], check=False)
    assert done.returncode == 0, f"the service user cannot run {sys.executable} with mlds (chmod o+x its directories): {done.stderr}"
    install = [sys.executable, "-m", "mlds.cli", "server", "install", str(project.root), "--merge-config",
               "--workgen-args", " ".join(WORK), "--publish-args", " ".join(PUBLISH)]  # fmt: skip
    project.as_service_user(install)
    project.run_bin("xadd")
    launcher = tmp_path / "mlds_trainer_launcher.sh"
    launcher.write_text(LAUNCHER.format(python=sys.executable, marker=project.root / "hostile-once"))
    add_app_version(project, AppVersion(APP, "1.00", (launcher,), launcher.name, api_version="7.20.0"))
    project.set_config(min_sendwork_interval=1)
    project.start_daemons()
    return project


def stored(project):
    _, tables = DatasetStore(ServerState(str(project.root)).store_dir, "DS1").read()
    return {task: sorted(table.indices.tolist()) for task, table in tables.items()}


def results_by_workunit(project):
    found = {}
    for name, validate_state in project.query("SELECT w.name, r.validate_state FROM result r JOIN workunit w ON r.workunitid = w.id"):
        found.setdefault(name, []).append(validate_state)
    return found


def wait_with_updates(project, client, condition, timeout, what):
    try:
        client.wait_updating(project.url, condition, timeout, what)
    except ServiceError as error:
        pytest.fail(f"{error}\nresults: {results_by_workunit(project)}\n{project.diagnostics(40)}\n"
                    f"== client ==\n{tail(client.log, 60)}")  # fmt: skip


def kill_daemon(project, pid_name):
    pid = int((project.pid_dir / pid_name).read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_alive(pid), 30, f"{pid_name} to die")


def test_a_real_boinc_project_builds_a_ds1_release_with_mlds(deployed, boinc_client, record_property):
    project, started = deployed, time.monotonic()
    client = boinc_client(project)
    everything = {m: [0, 1] for m in MACHINES}
    # the first assimilation, then kill -9 of both mlds daemons mid-run; bin/start brings them back
    wait_with_updates(project, client, lambda: project.query("SELECT COUNT(*) FROM workunit WHERE assimilate_state = 2")[0][0] >= 1,
                      300, "a first workunit to be assimilated")  # fmt: skip
    first_assimilated = time.monotonic() - started
    kill_daemon(project, "mlds_workgen.pid")
    kill_daemon(project, "mlds_assimilate.pid")
    project.start_daemons()
    wait_with_updates(project, client, lambda: stored(project) == everything, 600, "every network to be stored")
    all_stored = time.monotonic() - started

    state = ServerState(str(project.root))
    names = [row[0] for row in project.query("SELECT name FROM workunit")]
    parts = [parse_workunit_name(name) for name in names]
    assert len(names) == len(set(names))
    assert sorted((p.task, p.first_index, p.count) for p in parts if p.continuation == 0 and p.reissue == 0) == [(m, 0, 2) for m in sorted(MACHINES)]
    assert any(p.continuation > 0 for p in parts), "an epoch budget of 1 needs follow-ups"
    verdicts = results_by_workunit(project)
    assert sum(states.count(INVALID) for states in verdicts.values()) == 1, verdicts  # the hostile upload
    hostile = next(name for name, states in verdicts.items() if INVALID in states)
    assert VALID in verdicts[hostile]  # sent again and then valid
    assert set(project.configured_daemons()) <= set(project.daemon_pids()), "a daemon stopped"
    # every valid result had its training re-executed, and the real client's matched the server's
    valid_lines = [line for line in (project.log_dir / "mlds_validate.log").read_text().splitlines() if ": valid: " in line]
    assert len(valid_lines) == sum(states.count(VALID) for states in verdicts.values()), valid_lines
    assert all(line.endswith("spot-checked") for line in valid_lines), valid_lines

    wait_until(lambda: all(s == ASSIMILATED for (s,) in project.query("SELECT assimilate_state FROM workunit")), 120, "the last assimilation")
    assert list_records(state.followups_dir) == [] and list_records(state.failed_dir) == []
    assert os.listdir(state.checkpoints_dir) == []  # every kept checkpoint was released
    project.as_service_user([project.bin_dir / "mlds_publish", "--dataset", "DS1", *PUBLISH], cwd=project.tmp_dir)
    release = os.path.join(state.releases_dir, "MLDS-DS1-2.tar.gz")
    dataset = mlds.load_dataset(release)
    for machine in MACHINES:
        assert dataset[machine].weights.shape == (2, 4364)
        assert dataset[machine].metadata["epochs"].max() <= 3
    print(f"\nreal BOINC project: first workunit assimilated at {first_assimilated:.0f} s, "
          f"all {2 * len(MACHINES)} networks stored at {all_stored:.0f} s, {len(names)} workunits")  # fmt: skip
    record_property("seconds_to_first_assimilation", round(first_assimilated, 1))
    record_property("seconds_to_all_stored", round(all_stored, 1))
