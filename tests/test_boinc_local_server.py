"""BOINC's real server, built from source, on 127.0.0.1 (``mlds.boinc_local``, fixtures in
``tests/boinc_server_fixtures.py``).

From the cheapest part to the whole chain: BOINC's schema in a private MariaDB; a ``make_project``
project whose master page, scheduler and upload handler answer through a private Apache running as
the service user; ``stage_file_native`` and ``create_work`` making a workunit row; and one round trip
through Debian's real client: a tiny shell-script app, signed by the project's key, runs, uploads
and reports; ``script_validator`` calls our init script with the result's file (VALID for the right
output, INVALID for a wrong one) and ``script_assimilator`` calls ours with the workunit's name and
file (or ``--error`` for the workunit that failed). Every wait polls the database or the server
against a deadline. The build is cached (``~/.cache/mlds/boinc-server``); the measured times are
printed (``pytest -s``) and recorded as test properties.
"""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mlds.boinc_local.apps import AppVersion, add_app, add_app_version
from mlds.boinc_local.build import build_boinc_server, check_build_dependencies
from mlds.boinc_local.deps import require_headers, require_programs
from mlds.boinc_local.errors import BuildError, MissingDependencyError, ServiceError
from mlds.boinc_local.project import process_alive
from mlds.boinc_local.waiting import tail, wait_until
from tests.boinc_server_fixtures import missing_part_skips

APP = "tiny"

# A BOINC app that does not link the BOINC API: it resolves its soft-link files itself, writes the
# output and the finish file (without it the client counts a premature exit and restarts it).
TINY_APP = """#!/bin/sh
resolve() {
    target=$(sed -n 's:.*<soft_link>\\(.*\\)</soft_link>.*:\\1:p' "$1" 2>/dev/null)
    echo "${target:-$1}"
}
tr 'a-z' 'A-Z' < "$(resolve in)" > "$(resolve out)" || exit 1
echo 0 > boinc_finish_called
"""

# script_validator --init_script "tiny_validate files": valid iff the output is the expected one
TINY_VALIDATE = """#!/bin/sh
[ "$#" = 1 ] || { echo "tiny_validate: want 1 file, got $#: $*" >&2; exit 1; }
grep -qx 'HELLO BOINC' "$1"
"""

# script_assimilator --script "tiny_assimilate wu_name files" (a failed WU: --error MASK NAME ID BATCH);
# must exit 0, or the assimilator daemon stops
TINY_ASSIMILATE = """#!/bin/sh
mkdir -p ../assimilated
if [ "$1" = "--error" ]; then echo "error $2" > "../assimilated/$3"; exit 0; fi
cp "$2" "../assimilated/$1"
"""

INPUT_TEMPLATE = """<input_template>
  <file_info><number>0</number></file_info>
  <workunit>
    <file_ref><file_number>0</file_number><open_name>in</open_name></file_ref>
    <rsc_fpops_est>1e11</rsc_fpops_est>
    <rsc_fpops_bound>1e14</rsc_fpops_bound>
    <delay_bound>3600</delay_bound>
  </workunit>
</input_template>
"""

OUTPUT_TEMPLATE = """<output_template>
  <file_info>
    <name><OUTFILE_0/></name>
    <generated_locally/>
    <upload_when_present/>
    <max_nbytes>100000</max_nbytes>
    <url><UPLOAD_URL/></url>
  </file_info>
  <result>
    <file_ref><file_name><OUTFILE_0/></file_name><open_name>out</open_name></file_ref>
  </result>
</output_template>
"""

# result.server_state / outcome / validate_state, workunit.assimilate_state (db/boinc_db_types.h);
# the validator turns an invalid result's outcome from SUCCESS into VALIDATE_ERROR
OVER, SUCCESS, VALIDATE_ERROR, VALID, INVALID, ASSIMILATED = 5, 1, 6, 1, 2, 2


def query(project_or_db, sql, *args):
    with project_or_db.connect() as connection, connection.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchall()


def fetch(url, data=None):
    with urllib.request.urlopen(url, data=data, timeout=30) as response:
        return response.status, response.read().decode(errors="replace")


# -- the schema, from the tarball, in a private MariaDB ------------------------------------------


@pytest.mark.boinc_server
def test_schema_sql_comes_from_the_source_without_a_build(boinc_schema_sql):
    text = boinc_schema_sql.read_text()
    assert "create table workunit" in text.lower()
    assert {p.name for p in boinc_schema_sql.parent.iterdir()} == {"schema.sql", "constraints.sql", "content.sql"}


@pytest.mark.mariadb
def test_boinc_schema_is_loaded_with_its_constraints_and_content(boinc_db):
    columns = {}
    for table, column in query(
        boinc_db, "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s", boinc_db.database
    ):
        columns.setdefault(table, set()).add(column)
    assert {"id", "appid", "name", "xml_doc", "canonical_resultid", "assimilate_state", "error_mask"} <= columns["workunit"]
    assert {"id", "workunitid", "server_state", "outcome", "validate_state", "xml_doc_in", "hostid"} <= columns["result"]
    assert {"id", "name", "user_friendly_name", "deprecated"} <= columns["app"]
    # constraints.sql: unique names; content.sql: the consent types
    unique = query(boinc_db, "SHOW INDEX FROM workunit WHERE Column_name = 'name' AND Non_unique = 0")
    assert unique, "constraints.sql was not loaded (no unique index on workunit.name)"
    assert {row[0] for row in query(boinc_db, "SELECT shortname FROM consent_type")} == {"ENROLL", "STATSEXPORT"}
    assert query(boinc_db, "SELECT DATABASE()")[0][0] == boinc_db.database


@pytest.mark.mariadb
def test_boinc_db_starts_empty_in_the_session_server(boinc_db, mariadb_server):
    databases = {row[0] for row in query(mariadb_server.params, "SHOW DATABASES")}
    assert boinc_db.database in databases and (boinc_db.host, boinc_db.port) == (mariadb_server.host, mariadb_server.port)
    assert query(boinc_db, "SELECT COUNT(*) FROM workunit")[0][0] == 0
    with mariadb_server.connect(database=boinc_db.database) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO app (name, user_friendly_name, create_time) VALUES ('seen_by_both', 'x', 0)")
    assert query(boinc_db, "SELECT name FROM app") == (("seen_by_both",),)


# -- the build and the project ---------------------------------------------------------------------


@pytest.mark.boinc_server
def test_a_broken_source_fails_with_the_log_and_leaves_no_cache(tmp_path):
    with missing_part_skips():
        check_build_dependencies()
    source = tmp_path / "not-boinc"
    (source / "db").mkdir(parents=True)
    (source / "_autosetup").write_text("#!/bin/sh\necho 'no autotools here' >&2\nexit 7\n")
    (source / "_autosetup").chmod(0o755)
    with pytest.raises(BuildError) as failure:
        build_boinc_server(source, patches_dir="", cache_root=tmp_path / "cache")
    assert "_autosetup exited 7" in str(failure.value)
    assert "no autotools here" in Path(failure.value.log).read_text()
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith((".lock", ".failed.log"))] == ["builds"]
    assert list((tmp_path / "cache" / "builds").iterdir()) == []
    with pytest.raises(MissingDependencyError, match="MLDS_BOINC_SOURCE"):
        build_boinc_server(tmp_path / "absent.tar.gz", cache_root=tmp_path / "cache")


def test_a_missing_part_names_the_debian_packages_to_install():
    with pytest.raises(MissingDependencyError, match=r"mlds-no-such-tool.*apt-get install mlds-tools-pkg$"):
        require_programs({"mlds-no-such-tool": "mlds-tools-pkg", "sh": "dash"})
    with pytest.raises(MissingDependencyError, match=r"apt-get install mlds-dev-pkg$"):
        require_headers({"mlds/no_such_header.h": "mlds-dev-pkg"})


FAKE_TARGETS = "svn_version.h libboinc.la libboinc_crypt.la libsched.la"
FAKE_MAKEFILE = f"""all:
\techo "build by $$PPID" >> "$$MLDS_TEST_BUILD_RECORD"
\tsleep 1
{FAKE_TARGETS}:
\t@true
"""


def fake_source(root):
    """A source tree with BOINC's build steps (``_autosetup``, ``configure``, the make targets) as
    no-ops; the top-level ``make`` records each build in ``$MLDS_TEST_BUILD_RECORD``."""
    for script in ("_autosetup", "configure"):
        (root / script).parent.mkdir(parents=True, exist_ok=True)
        (root / script).write_text("#!/bin/sh\necho 'S[\"ENABLE_FCGI_TRUE\"]=\"#\"' > config.status\n")
        (root / script).chmod(0o755)
    (root / "Makefile").write_text(FAKE_MAKEFILE)
    for directory in ("api", "lib", "zip", "db", "sched", "samples/wrapper"):
        (root / directory).mkdir(parents=True)
        (root / directory / "Makefile").write_text(f"all {FAKE_TARGETS}:\n\t@true\n")
    return root


@pytest.mark.boinc_server
def test_two_processes_build_once_and_share_the_published_tree(tmp_path):
    with missing_part_skips():
        check_build_dependencies()
    source, cache, record = fake_source(tmp_path / "src"), tmp_path / "cache", tmp_path / "builds.txt"
    record.touch()
    code = f"from mlds.boinc_local.build import build_boinc_server; print(build_boinc_server({str(source)!r}, '', {str(cache)!r}))"
    env = {**os.environ, "MLDS_TEST_BUILD_RECORD": str(record)}
    builders = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    trees = {builder.communicate(timeout=120)[0].strip() for builder in builders}
    assert all(builder.returncode == 0 for builder in builders)
    assert len(record.read_text().splitlines()) == 1, "the second process must wait for the first one's build"
    (tree,) = trees
    (published,) = [p for p in cache.iterdir() if p.is_symlink()]
    assert Path(tree) == (published / "boinc").resolve() and (Path(tree) / "Makefile").exists()
    assert [p.name for p in (cache / "builds").iterdir()] == [os.readlink(published).split("/")[-1]]
    assert build_boinc_server(source, "", cache) == Path(tree)  # cached: no third build
    assert len(record.read_text().splitlines()) == 1


@pytest.mark.boinc_server
def test_the_master_page_scheduler_and_upload_handler_answer(boinc_project):
    status, page = fetch(boinc_project.url)
    assert status == 200
    assert f'<link rel="boinc_scheduler" href="{boinc_project.scheduler_url}">' in page
    request = b"<scheduler_request><platform_name>x86_64-pc-linux-gnu</platform_name></scheduler_request>"
    status, reply = fetch(boinc_project.scheduler_url, data=request)
    assert status == 200 and "<scheduler_reply>" in reply, reply
    status, reply = fetch(boinc_project.upload_url, data=b"<data_server_request></data_server_request>")
    assert status == 200 and "<data_server_reply>" in reply, reply
    # Apache (and so the CGIs) run as the service user, never as root
    assert _uid_of(boinc_project.web.pid) == boinc_project.service_user.uid
    assert boinc_project.service_user.uid != 0


def _uid_of(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def add_tiny_app(project, tmp_path, with_version=True):
    add_app(project, APP, "Tiny test app")
    project.write_file(f"templates/{APP}_in", INPUT_TEMPLATE)
    project.write_file(f"templates/{APP}_out", OUTPUT_TEMPLATE)
    if with_version:
        script = tmp_path / "tiny_app_1.00.sh"
        script.write_text(TINY_APP)
        add_app_version(project, AppVersion(APP, "1.00", (script,), script.name))


def create_jobs(project, tmp_path, jobs, *options):
    """``{wu_name: input text}``: staged and created with ``create_work --stdin``."""
    lines = []
    for wu_name, text in jobs.items():
        staged = tmp_path / f"{wu_name}.in"
        staged.write_text(text)
        lines.append(f"--wu_name {wu_name} {project.stage_file(staged)}")
    project.create_work(APP, lines, *options)


@pytest.mark.boinc_server
def test_stage_file_and_create_work_make_a_workunit(boinc_project, tmp_path):
    add_tiny_app(boinc_project, tmp_path, with_version=False)
    create_jobs(boinc_project, tmp_path, {"tiny_wu_1": "hello boinc\n"})
    path = boinc_project.run_bin("dir_hier_path", "tiny_wu_1.in").stdout.strip()
    assert Path(path).read_text() == "hello boinc\n" and Path(path).is_relative_to(boinc_project.download_dir)
    ((appid, name, xml_doc, fpops),) = query(boinc_project, "SELECT appid, name, xml_doc, rsc_fpops_est FROM workunit")
    assert name == "tiny_wu_1" and fpops == 1e11
    assert query(boinc_project, "SELECT name FROM app WHERE id = %s", appid) == ((APP,),)
    xml_doc = xml_doc.decode() if isinstance(xml_doc, bytes) else xml_doc  # a BLOB column
    assert "<name>tiny_wu_1.in</name>" in xml_doc and "<open_name>in</open_name>" in xml_doc


@pytest.mark.boinc_server
def test_daemons_start_and_stop_as_the_service_user(boinc_project):
    boinc_project.start_daemons()
    pids = boinc_project.daemon_pids()
    assert set(pids) == {"feeder.pid", "transitioner.pid", "file_deleter.pid"}
    assert {_uid_of(pid) for pid in pids.values()} == {boinc_project.service_user.uid}
    boinc_project.stop_daemons()
    assert boinc_project.daemon_pids() == {}
    assert not any(process_alive(pid) for pid in pids.values())
    assert list(boinc_project.pid_dir.glob("*.pid")) == []


# -- one round trip through the real client ---------------------------------------------------------


class RoundTrip:
    """The project and client of the round trip, polled against deadlines, with diagnostics."""

    def __init__(self, project, client):
        self.project, self.client = project, client
        self.asked = -1e9

    def results(self):
        """``{wu name: [(server_state, outcome, validate_state), …]}``."""
        rows = query(
            self.project,
            "SELECT wu.name, r.server_state, r.outcome, r.validate_state FROM result r JOIN workunit wu ON r.workunitid = wu.id",
        )
        found = {}
        for name, *state in rows:
            found.setdefault(name, []).append(tuple(state))
        return found

    def workunits(self):
        rows = query(self.project, "SELECT name, assimilate_state, error_mask, canonical_resultid FROM workunit")
        return {name: (state, mask, canonical) for name, state, mask, canonical in rows}

    def wait(self, condition, timeout, what):
        """Poll ``condition``; ask the client for a scheduler RPC now and every 5 s meanwhile."""

        def check():
            if time.monotonic() - self.asked > 5:
                self.client.update(self.project.url)
                self.asked = time.monotonic()
            return condition()

        try:
            wait_until(check, timeout, what, interval=0.5)
        except ServiceError as timeout_error:
            pytest.fail(f"{timeout_error}\n{self.diagnostics()}")

    def diagnostics(self):
        return "\n".join(
            [f"results: {self.results()}", f"workunits: {self.workunits()}", self.project.diagnostics(),
             f"== client log {self.client.log} ==\n" + tail(self.client.log, 60)]
        )  # fmt: skip


@pytest.mark.boinc_server
@pytest.mark.boinc_client
@pytest.mark.slow
def test_round_trip_through_the_real_client(boinc_project, boinc_client, tmp_path, record_property):
    marks = {"start": time.monotonic()}
    project = boinc_project
    add_tiny_app(project, tmp_path)
    project.write_file("bin/tiny_validate", TINY_VALIDATE, mode=0o755)
    project.write_file("bin/tiny_assimilate", TINY_ASSIMILATE, mode=0o755)
    project.add_daemon(f'script_validator --app {APP} --init_script "tiny_validate files" --sleep_interval 1')
    project.add_daemon(f'script_assimilator --app {APP} --script "tiny_assimilate wu_name files" --sleep_interval 1')
    project.set_config(min_sendwork_interval=0)  # make_project's 6 s would defer the second report
    project.start_daemons()
    create_jobs(project, tmp_path, {"tiny_good": "hello boinc\n"})
    # a wrong output is INVALID; one result at most, so the workunit then fails and is assimilated as an error
    create_jobs(project, tmp_path, {"tiny_bad": "goodbye\n"}, "--max_total_results", "1", "--max_success_results", "1")
    marks["work created"] = time.monotonic()

    client = boinc_client(project)
    trip = RoundTrip(project, client)
    marks["client attached"] = time.monotonic()
    over = lambda name: any(s == OVER for s, _, _ in trip.results().get(name, []))  # noqa: E731
    trip.wait(lambda: over("tiny_good") and over("tiny_bad"), 240, "both results to be reported")
    marks["reported"] = time.monotonic()
    for name in ("tiny_good", "tiny_bad"):
        ((server_state, outcome, _),) = trip.results()[name]
        assert outcome == SUCCESS, f"{name}: the client's task failed (outcome {outcome})\n{trip.diagnostics()}"

    assimilated = lambda: all(wu[0] == ASSIMILATED for wu in trip.workunits().values())  # noqa: E731
    trip.wait(assimilated, 120, "both workunits to be validated and assimilated")
    marks["assimilated"] = time.monotonic()
    expected = {"tiny_good": [(OVER, SUCCESS, VALID)], "tiny_bad": [(OVER, VALIDATE_ERROR, INVALID)]}
    assert trip.results() == expected, trip.diagnostics()
    workunits = trip.workunits()  # name -> (assimilate_state, error_mask, canonical_resultid)
    assert workunits["tiny_good"][1] == 0 and workunits["tiny_good"][2] != 0, workunits
    assert workunits["tiny_bad"][1] != 0 and workunits["tiny_bad"][2] == 0, workunits
    out = project.root / "assimilated"
    assert (out / "tiny_good").read_text() == "HELLO BOINC\n"
    assert (out / "tiny_bad").read_text() == f"error {workunits['tiny_bad'][1]}\n"
    report_times(marks, record_property)


def report_times(marks, record_property):
    start = marks.pop("start")
    times = {name: round(at - start, 1) for name, at in marks.items()}
    for name, seconds in times.items():
        record_property(f"seconds_to_{name.replace(' ', '_')}", seconds)
    print(f"\nreal BOINC server round trip (seconds from project ready): {times}")
