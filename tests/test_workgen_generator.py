"""The work generator's choices, without a database: what to create next, follow-ups, re-issues.

The passes against BOINC's real database and tools are in ``test_workgen_boinc_server.py``.
"""

import io

import pytest

from boinc_app.workunit_spec import write_spec
from mlds.server.daemon import DaemonLog, DaemonOptions
from mlds.server.state import ServerState, write_record
from workgen.generator import GeneratorConfig, followup_jobs, issued_counts, milestone_distance, new_jobs, reissue_jobs
from workgen.plan import follow_up
from workgen.specs import make_spec, parse_workunit_name, workunit_name


def config(tmp_path, **changes):
    values = dict(project=str(tmp_path), datasets=("DS1",), networks=100, networks_per_workunit=32)
    values.update(changes)
    return GeneratorConfig(**values)


def test_milestone_distance_counts_to_the_next_milestone_and_stops_at_the_target():
    assert milestone_distance(0, 1000, (100, 500, 1000)) == 100
    assert milestone_distance(96, 1000, (100, 500, 1000)) == 4
    assert milestone_distance(100, 1000, (100, 500, 1000)) == 400
    assert milestone_distance(40, 40, (100, 500)) == 0  # the target is reached
    assert milestone_distance(32, 40, (100, 500)) == 8  # the target counts as a milestone


def test_new_work_goes_to_the_tasks_furthest_from_their_milestone(tmp_path):
    existing = {workunit_name("DS1", "ParityMachine", 0, 32), workunit_name("DS1", "ParityMachine", 32, 32),
                workunit_name("DS1", "ParityMachine", 0, 32, 1), workunit_name("DS1", "EightBitMachine", 0, 32)}  # fmt: skip
    jobs = new_jobs(config(tmp_path), existing, 8)
    names = [job.name for job in jobs]
    # SingleDirect, SingleInvert, SimpleXOR have 0 issued (distance 100), EightBit 32 (68), Parity 64 (36);
    # ties go to the dataset's order of machines
    assert names[:3] == [workunit_name("DS1", t, 0, 32) for t in ("SingleDirectMachine", "SingleInvertMachine", "SimpleXORMachine")]
    assert names[3:7] == [workunit_name("DS1", t, 32, 32) for t in ("SingleDirectMachine", "SingleInvertMachine", "SimpleXORMachine", "EightBitMachine")]
    assert names[7] == workunit_name("DS1", "SingleDirectMachine", 64, 32)  # 36 to go, tied with Parity, earlier
    assert not set(names) & existing


def test_new_work_stops_at_the_target_with_a_short_last_workunit(tmp_path):
    cfg = config(tmp_path, networks=40, tasks=("ParityMachine",))
    jobs = new_jobs(cfg, set(), 10)
    assert [job.name for job in jobs] == [workunit_name("DS1", "ParityMachine", 0, 32), workunit_name("DS1", "ParityMachine", 32, 8)]
    assert [len(job.spec.networks) for job in jobs] == [32, 8]
    assert issued_counts(cfg.plan("DS1"), {job.name for job in jobs}) == {"ParityMachine": 40}
    assert new_jobs(cfg, {job.name for job in jobs}, 10) == []


def test_mod_splits_the_tasks_between_instances_without_overlap(tmp_path):
    shares = [{job.spec.task["machine"] for job in new_jobs(config(tmp_path, daemon=DaemonOptions(mod=(2, i))), set(), 20)} for i in (0, 1)]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(config(tmp_path).plan("DS1").task_names())


def test_a_recorded_follow_up_is_a_job_until_it_exists(tmp_path, unfinished_result):
    from boinc_app.result_file import read_result

    state = ServerState(str(tmp_path))
    state.make_dirs()
    spec, result, _ = read_result(unfinished_result[1])
    follow = follow_up(spec, result)
    write_spec(follow, state.spec_path(follow.name))
    write_record(state.followup_path(follow.name), {"workunit": follow.name})
    jobs = followup_jobs(state, set(), config(tmp_path))
    assert [(job.name, job.resume, job.kind) for job in jobs] == [(follow.name, True, "follow-up")]
    assert followup_jobs(state, {follow.name}, config(tmp_path)) == []
    assert not (tmp_path / "mlds" / "followups" / f"{follow.name}.json").exists()  # seen in the DB: record gone


def test_failed_workunits_are_reissued_under_new_names_at_most_max_reissues_times(tmp_path):
    state = ServerState(str(tmp_path))
    state.make_dirs()
    spec = make_spec("DS1", "ParityMachine", networks=4)
    write_spec(spec, state.spec_path(spec.name))
    write_record(state.failed_path(spec.name), {"workunit": spec.name, "reason": "error mask 2"})
    log_text = io.StringIO()
    log = DaemonLog(stream=log_text)
    jobs, abandoned = reissue_jobs(state, set(), config(tmp_path, max_reissues=2), log)
    assert [job.name for job in jobs] == [f"{spec.name}-r1"] and abandoned == []
    assert jobs[0].spec.networks == spec.networks and jobs[0].spec.name == f"{spec.name}-r1"
    # the second re-issue fails too: at the cap it is abandoned, loudly
    second = f"{spec.name}-r2"
    write_spec(jobs[0].spec.__class__(**{**jobs[0].spec.__dict__, "name": second}), state.spec_path(second))
    write_record(state.failed_path(second), {"workunit": second, "reason": "error mask 2"})
    jobs, abandoned = reissue_jobs(state, {f"{spec.name}-r1", second}, config(tmp_path, max_reissues=2), log)
    assert jobs == [] and abandoned == [second]
    assert "[CRITICAL]" in log_text.getvalue() and second in log_text.getvalue()


def test_names_round_trip_and_refuse_what_the_generator_never_makes():
    for name in ("DS1-ParityMachine-n000000-k32-c0", "DS3-automaton-042-n000008-k8-c3-r2"):
        assert str(parse_workunit_name(name)) == name
    for bad in ("DS1-ParityMachine-n000000-k32-c0_0", "DS1-ParityMachine-n0-k32-c0", "x", "DS1-ParityMachine-n000000-k0-c0"):
        with pytest.raises(ValueError):
            parse_workunit_name(bad)
