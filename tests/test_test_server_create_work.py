"""create_work's arguments, its --stdin line format and templates (mlds.test_server.create_work)."""

import os

import pytest
from click.testing import CliRunner

from mlds.cli import main
from mlds.test_server import db
from mlds.test_server.apps import AppVersionSpec, add_app_version
from mlds.test_server.create_work import (
    JobDescription,
    RemoteFile,
    create_jobs,
    jobs_from,
    parse_arguments,
    parse_stdin_line,
    split_command_line,
)
from mlds.test_server.errors import CreateWorkError
from mlds.test_server.project import init_project, stage_file

APP = "mlds_trainer"


def make_project(tmp_path, app_text="#!/bin/sh\nexit 0\n", app=APP):
    """A test project with one signed app version (version 100, x86_64 Linux)."""
    config = init_project(tmp_path / "proj", app=app)
    main_program = tmp_path / f"{app}_100.sh"
    main_program.write_text(app_text)
    add_app_version(config, AppVersionSpec(app, 100, "x86_64-pc-linux-gnu", (str(main_program),)))
    return config


def stage_input(config, tmp_path, name="spec_a.json", payload=b'{"spec": 1}\n'):
    path = tmp_path / name
    path.write_bytes(payload)
    return stage_file(config, str(path), copy=True)


def test_split_command_line_follows_boinc():
    assert split_command_line('a  "b c" \'d e\'\tf') == ["a", "b c", "d e", "f"]
    assert split_command_line('--command_line "--seed 3" in1') == ["--command_line", "--seed 3", "in1"]
    assert split_command_line('x"y z"') == ['x"y', 'z"']  # quotes only open a token
    assert split_command_line('"unterminated') == ["unterminated"]
    assert split_command_line("   ") == []


def test_arguments_single_and_double_dash_options_and_files():
    job, use_stdin = parse_arguments(
        ["-appname", "app", "--wu_name", "w1", "--rsc_fpops_est", "2e12", "-delay_bound", "100",
         "--command_line", "--x 1", "-d", "3", "in1", "--remote_file", "http://h/f", "12", "0" * 32, "in2"]
    )  # fmt: skip
    assert not use_stdin
    assert (job.appname, job.wu_name, job.rsc_fpops_est, job.delay_bound, job.command_line) == ("app", "w1", 2e12, 100, "--x 1")
    assert job.infiles == ("in1", RemoteFile("http://h/f", 12, "0" * 32), "in2")
    assert job.rsc_memory_bound == 5e8 and job.max_total_results == 1  # BOINC's defaults


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--wu_name", "w"], "--appname is required"),
        (["--appname", "a", "--bogus", "1"], "bad argument '--bogus'"),
        (["--appname", "a", "--target_host", "3"], "does not support"),
        (["--appname", "a", "--rsc_fpops_est", "many"], "not a number"),
        (["--appname", "a", "--wu_name"], "needs 1 value"),
        (["--appname", "a", "--remote_file", "u", "1"], "needs 3 values"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(CreateWorkError, match=message):
        parse_arguments(arguments)


def test_stdin_lines_override_and_extend_the_command_line():
    defaults = JobDescription(appname="app", wu_name="batch", command_line="--a 1", infiles=("common",))
    job = parse_stdin_line('--wu_name one --command_line "--b 2" --priority 5 x.json', defaults, 0)
    assert (job.wu_name, job.command_line, job.priority, job.infiles) == ("one", "--a 1 --b 2", 5, ("common", "x.json"))
    unnamed = parse_stdin_line("y.json", defaults, 7)
    assert unnamed.wu_name == "batch_7" and unnamed.command_line == "--a 1"
    with pytest.raises(CreateWorkError, match="bad stdin argument '--appname'"):
        parse_stdin_line("--appname other y.json", defaults, 0)
    with pytest.raises(CreateWorkError, match="not supported"):
        parse_stdin_line("--target_user 2 y.json", defaults, 0)


def test_jobs_from_stdin_skips_blank_lines_and_names_by_line():
    jobs = jobs_from(["--appname", "app", "--wu_name", "b", "--stdin"], ["f0\n", "\n", "--wu_name named f2\n", "f3"])
    assert [(j.wu_name, j.infiles) for j in jobs] == [("b_0", ("f0",)), ("named", ("f2",)), ("b_3", ("f3",))]
    assert all(j.wu_template == os.path.join("templates", "app_in") for j in jobs)


def test_default_name_is_app_pid_time():
    (job,) = jobs_from(["--appname", "app", "in"])
    app, pid, stamp = job.wu_name.split("_", 2)
    assert app == "app" and pid == str(os.getpid()) and float(stamp) > 0


def test_create_work_makes_a_workunit_and_its_result(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    created = create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu1", name]))
    assert created == ["wu1"]
    connection = config.connect()
    wu = connection.execute("SELECT * FROM workunit").fetchone()
    files = connection.execute("SELECT * FROM wu_file").fetchall()
    result = connection.execute("SELECT * FROM result").fetchone()
    outputs = connection.execute("SELECT * FROM result_file").fetchall()
    assert (wu["name"], wu["rsc_fpops_est"], wu["delay_bound"]) == ("wu1", 1e12, 604800)  # the template wins
    assert [(f["name"], f["open_name"], f["nbytes"]) for f in files] == [(name, "spec.json", 12)]
    assert (result["name"], result["server_state"]) == ("wu1_0", db.UNSENT)
    assert [(o["name"], o["open_name"], o["url"]) for o in outputs] == [("wu1_0_0", "result.h5", "")]
    assert outputs[0]["max_nbytes"] == 64 << 20


def test_create_work_refuses_duplicates_missing_files_and_quorums(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "wu1", name]))
    cases = [
        (["--appname", APP, "--wu_name", "wu1", name], "exists already"),
        (["--appname", APP, "--wu_name", "wu2", "missing.json"], "neither in the download hierarchy"),
        (["--appname", APP, "--wu_name", "wu2"], "Too few var input files"),
        (["--appname", APP, "--wu_name", "wu2", name, name], "more input file"),
        (["--appname", APP, "--wu_name", "wu2", "--min_quorum", "2", name], "min_quorum"),
        (["--appname", "other", "--wu_name", "wu2", name], "not found"),
        (["--appname", APP, "--wu_name", "../x", name], "workunit name"),
        (["--appname", APP, "--wu_name", "wu2", "../../keys/code_sign_private"], "not a valid physical name"),
    ]
    for arguments, message in cases:
        with pytest.raises(CreateWorkError, match=message):
            create_jobs(config, jobs_from(arguments))
    assert config.connect().execute("SELECT COUNT(*) FROM workunit").fetchone()[0] == 1


def test_a_batch_is_all_or_nothing(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    with pytest.raises(CreateWorkError):
        create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "b", "--stdin"], [name, "missing.json"]))
    assert config.connect().execute("SELECT COUNT(*) FROM workunit").fetchone()[0] == 0


def test_file_at_the_top_of_download_is_copied_into_the_hierarchy(tmp_path):
    config = make_project(tmp_path)
    (tmp_path / "proj" / "download" / "top.json").write_bytes(b"{}")
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "w", "top.json"]))
    assert open(config.download_path("top.json"), "rb").read() == b"{}"


def test_templates_copy_unknown_elements_and_apply_limits(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    (tmp_path / "proj" / "templates" / "in2").write_text(
        "<input_template><file_info><sticky/></file_info><workunit>"
        "<file_ref><open_name>spec.json</open_name><copy_file/></file_ref>"
        "<command_line>--fast</command_line><rsc_memory_bound>7e8</rsc_memory_bound><credit_hint>3</credit_hint>"
        "</workunit></input_template>"
    )
    (tmp_path / "proj" / "templates" / "out2").write_text(
        "<file_info><name><OUTFILE_0/></name><max_nbytes>1000</max_nbytes><url><UPLOAD_URL/></url>"
        "<generated_locally/></file_info><result><file_ref><file_name><OUTFILE_0/></file_name>"
        "<open_name>out</open_name></file_ref><report_immediately/></result>"
    )  # no enclosing <output_template>: BOINC accepts that too
    create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "w", "--wu_template", "templates/in2", "--result_template", "templates/out2", name]))
    connection = config.connect()
    wu = connection.execute("SELECT * FROM workunit").fetchone()
    wu_file = connection.execute("SELECT * FROM wu_file").fetchone()
    output = connection.execute("SELECT * FROM result_file").fetchone()
    result = connection.execute("SELECT * FROM result").fetchone()
    assert (wu["command_line"], wu["rsc_memory_bound"], wu["extra_xml"]) == ("--fast", 7e8, "<credit_hint>3</credit_hint>")
    assert (wu_file["copy_file"], wu_file["extra_xml"]) == (1, "<sticky/>")
    assert (output["name"], output["max_nbytes"], output["open_name"], output["extra_xml"]) == ("w_0_0", 1000, "out", "<generated_locally/>")
    assert result["result_xml"] == "<report_immediately/>"


@pytest.mark.parametrize(
    "template, message",
    [
        ("<input_template><file_info/></input_template>", "no <workunit>"),
        ("<input_template><file_info><gzip/></file_info><workunit/></input_template>", "gzip"),
        ("<input_template><file_info/><workunit><file_ref/></workunit></input_template>", "No open name"),
        ("<input_template><file_info/><workunit><file_ref><open_name>a</open_name></file_ref>"
         "<file_ref><open_name>b</open_name></file_ref></workunit></input_template>", "too many <file_ref>s"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><input_template/>", "DOCTYPE"),
        ("<input_template><file_info>", "not well-formed"),
    ],
)  # fmt: skip
def test_bad_input_templates_are_refused(tmp_path, template, message):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    (tmp_path / "proj" / "templates" / "bad").write_text(template)
    with pytest.raises(CreateWorkError, match=message):
        create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "w", "--wu_template", "templates/bad", name]))


def test_command_line_given_twice_is_refused(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    (tmp_path / "proj" / "templates" / "in2").write_text(
        "<input_template><file_info/><workunit><file_ref><open_name>s</open_name></file_ref>"
        "<command_line>--a</command_line></workunit></input_template>"
    )
    with pytest.raises(CreateWorkError, match="Can't specify command line"):
        create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "w", "--wu_template", "templates/in2", "--command_line", "--b", name]))


def test_output_template_needs_max_nbytes_and_an_upload_url(tmp_path):
    config = make_project(tmp_path)
    name = stage_input(config, tmp_path)
    for template, message in [
        ("<output_template><file_info><name><OUTFILE_0/></name><url><UPLOAD_URL/></url></file_info><result/></output_template>", "max_nbytes"),
        ("<output_template><file_info><name><OUTFILE_0/></name><max_nbytes>9</max_nbytes></file_info><result/></output_template>", "UPLOAD_URL"),
    ]:
        (tmp_path / "proj" / "templates" / "out2").write_text(template)
        with pytest.raises(CreateWorkError, match=message):
            create_jobs(config, jobs_from(["--appname", APP, "--wu_name", "w", "--result_template", "templates/out2", name]))


def test_cli_create_work_reads_stdin(tmp_path):
    config = make_project(tmp_path)
    first = stage_input(config, tmp_path, "a.json")
    second = stage_input(config, tmp_path, "b.json", b"{}")
    runner = CliRunner()
    result = runner.invoke(
        main, ["test-server", "create-work", "--project", config.root, "--appname", APP, "--wu_name", "batch", "--stdin"],
        input=f"{first}\n--wu_name second {second}\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["created workunit batch_0", "created workunit second"]
    bad = runner.invoke(main, ["test-server", "create-work", "--project", config.root, "--appname", APP, "--bogus"])
    assert bad.exit_code == 1 and "bad argument '--bogus'" in bad.output


def test_templates_use_the_trainers_logical_names(tmp_path):
    """The default templates name the files as the trainer opens them (boinc_app.filenames)."""
    from boinc_app.filenames import RESULT_NAME, SPEC_NAME

    config = init_project(tmp_path / "proj")
    templates = tmp_path / "proj" / "templates"
    assert f"<open_name>{SPEC_NAME}</open_name>" in (templates / f"{APP}_in").read_text()
    assert f"<open_name>{RESULT_NAME}</open_name>" in (templates / f"{APP}_out").read_text()
    from mlds.test_server.project import write_launcher

    launcher = open(write_launcher(str(tmp_path / "launcher.sh"))).read()
    assert f"boinc_app.main {SPEC_NAME} -o {RESULT_NAME}" in launcher and os.access(tmp_path / "launcher.sh", os.X_OK)
    assert config.root == str(tmp_path / "proj")
