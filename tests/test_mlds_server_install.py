"""``mlds server install``: what it writes into a BOINC project, idempotence, and admins' edits.

The project here is the skeleton of what ``make_project`` creates (config.xml, project.xml, bin/);
``test_workgen_boinc_server.py`` installs into a real one and runs the daemons it configures.
"""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from lxml import etree

from mlds.cli import main
from mlds.server.install import InstallConfig, InstallError, install
from mlds.server.project_config import load_project_config

CONFIG_XML = """<boinc>
  <config>
    <db_name>mltest</db_name><db_host>127.0.0.1:33061</db_host><db_user>boincadm</db_user><db_passwd>pw</db_passwd>
    <host>testhost</host><uldl_dir_fanout>1024</uldl_dir_fanout>
    <download_dir>{root}/download</download_dir><upload_dir>{root}/upload</upload_dir>
  </config>
  <daemons>
    <daemon><cmd>feeder -d 3</cmd></daemon>
    <daemon><cmd>transitioner -d 3</cmd></daemon>
  </daemons>
  <tasks>
    <task><cmd>db_dump -d 2</cmd><period>24 hours</period><output>db_dump.out</output></task>
  </tasks>
</boinc>
"""


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "bin").mkdir(parents=True)
    (root / "config.xml").write_text(CONFIG_XML.format(root=root))
    (root / "project.xml").write_text("<boinc>\n  <platform><name>x86_64-pc-linux-gnu</name></platform>\n</boinc>\n")
    return root


def test_install_writes_templates_programs_app_and_merges_daemons(project):
    report = install(InstallConfig(str(project), datasets=("DS1", "DS3"), workgen_arguments=("--networks", "100"), merge_config=True))
    for name in ("mlds_trainer_in", "mlds_trainer_in_resume", "mlds_trainer_out"):
        etree.parse(str(project / "templates" / name))  # well-formed XML
    assert "rsc_fpops" not in (project / "templates" / "mlds_trainer_in").read_text()  # would override create_work's
    assert (project / "templates" / "mlds_trainer_in_resume").read_text().count("<file_info>") == 2
    max_nbytes = int(etree.parse(str(project / "templates" / "mlds_trainer_out")).findtext(".//max_nbytes"))
    assert 5e6 < max_nbytes < 64e6  # the largest honest result of DS1 (32 networks) and DS3 (8 networks)
    for program in ("mlds_workgen", "mlds_validate", "mlds_validate_service", "mlds_assimilate", "mlds_publish"):
        path = project / "bin" / program
        assert os.access(path, os.X_OK) and path.read_text().startswith(f"#!{sys.executable}\n")
    apps = [e.findtext("name") for e in etree.parse(str(project / "project.xml")).getroot().findall("app")]
    assert apps == ["mlds_trainer"]
    config = load_project_config(project)
    commands = config.daemons
    assert commands[:2] == ("feeder -d 3", "transitioner -d 3")
    assert "mlds_workgen --app mlds_trainer --dataset DS1 --dataset DS3 --networks 100" in commands
    validator = next(c for c in commands if c.startswith("script_validator"))
    assert validator.startswith('script_validator --app mlds_trainer --init_script "mlds_validate files result_id runtime" --max_granted_credit ')
    assert 10 < float(validator.split()[-1]) < 1e5  # credits: the largest fpops bound at 200 credits per 86,400 GFLOP
    assert 'script_assimilator --app mlds_trainer --script "mlds_assimilate wu_id files"' in commands
    tree = etree.parse(str(project / "config.xml"))
    outputs = [e.findtext("output") for e in tree.iterfind("daemons/daemon")]
    pids = [e.findtext("pid_file") for e in tree.iterfind("daemons/daemon")]
    assert outputs[2:] == ["mlds_workgen.log", "mlds_validate_service.log", "mlds_validate.log", "mlds_assimilate.log"]
    assert pids[2:] == ["mlds_workgen.pid", "mlds_validate_service.pid", "mlds_validate.pid", "mlds_assimilate.pid"]
    assert [e.findtext("cmd") for e in tree.iterfind("tasks/task")] == ["db_dump -d 2", "mlds_publish --dataset DS1 --dataset DS3"]
    assert "config.xml" in report.written


def test_install_twice_changes_nothing(project):
    config = InstallConfig(str(project), merge_config=True)
    install(config)
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    report = install(config)
    assert report.written == []
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_an_admins_edit_is_kept_unless_forced(project):
    config = InstallConfig(str(project), merge_config=True)
    install(config)
    template = project / "templates" / "mlds_trainer_out"
    template.write_text(template.read_text().replace("<upload_when_present/>", "<upload_when_present/><!-- admin -->"))
    with pytest.raises(InstallError, match="mlds_trainer_out differs"):
        install(config)
    assert "admin" in template.read_text()
    install(InstallConfig(str(project), merge_config=True, force=True))
    assert "admin" not in template.read_text()


def test_an_edited_daemon_line_is_kept_unless_forced(project):
    install(InstallConfig(str(project), merge_config=True))
    edited = (project / "config.xml").read_text().replace("mlds_workgen --app mlds_trainer --dataset DS1", "mlds_workgen --app mlds_trainer --dataset DS1 -d 4")
    (project / "config.xml").write_text(edited)
    with pytest.raises(InstallError, match="mlds_workgen.log"):
        install(InstallConfig(str(project), merge_config=True, workgen_arguments=("--networks", "5")))
    assert "-d 4" in (project / "config.xml").read_text()


def test_without_tokens_for_a_boinc_with_the_token_bug(project):
    install(InstallConfig(str(project), tokens=False, merge_config=True))
    commands = load_project_config(project).daemons
    assert any(c.startswith('script_validator --app mlds_trainer --init_script "mlds_validate" ') for c in commands)
    assert 'script_assimilator --app mlds_trainer --script "mlds_assimilate"' in commands


def test_the_installed_programs_find_their_project_from_their_own_path(project):
    install(InstallConfig(str(project)))
    # BOINC's bin/ holds Python scripts named like mlds's packages; they must not shadow them
    for shadow in ("assimilator.py", "validator.py", "workgen.py"):
        (project / "bin" / shadow).write_text("raise ImportError('BOINC script imported instead of mlds')\n")
    tmp_host = project / "tmp_testhost"
    tmp_host.mkdir()
    # as script_assimilator calls it: ../bin/mlds_assimilate with no arguments is BOINC's token bug
    done = subprocess.run(["../bin/mlds_assimilate"], cwd=tmp_host, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "55e16adf3a" in done.stderr
    assert (project / "mlds" / "specs").is_dir()


def test_the_command_refuses_a_directory_that_is_no_boinc_project(tmp_path):
    result = CliRunner().invoke(main, ["server", "install", str(tmp_path)])
    assert result.exit_code == 1 and "not a BOINC project" in result.output
    result = CliRunner().invoke(main, ["server", "install", str(tmp_path / "missing")])
    assert result.exit_code == 2
