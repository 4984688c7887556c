"""``mlds server install PROJECT_DIR``: plug mlds into a BOINC project made by ``make_project``.

What an administrator gets, all idempotent (running it again changes nothing) and never
overwriting an edit of theirs without ``--force``:

- ``templates/<app>_in``, ``<app>_in_resume``, ``<app>_out`` (``workgen.templates``; the output's
  ``max_nbytes`` from the largest honest result of the datasets served);
- ``bin/mlds_workgen``, ``bin/mlds_validate``, ``bin/mlds_assimilate``, ``bin/mlds_publish``: small
  Python programs whose shebang is the Python that has mlds, each its own executable so that
  ``bin/start`` names its pid and lock files after it, each finding the project from its own path;
- the ``<app>`` entry in ``project.xml`` (then ``bin/xadd``);
- the ``<daemon>`` and ``<task>`` lines for ``config.xml``, printed, or merged with ``--merge-config``
  (each with its own ``<output>`` and ``<pid_file>``: two script daemons would otherwise share them);
- ``PROJECT/mlds/`` (``mlds.server.state``) and ``mlds/install.json``, the sha256 of every file
  written, which is how a later run tells an admin's edit from its own earlier output.
"""

import hashlib
import json
import os
import shlex
import stat
import sys
from dataclasses import dataclass, field

from lxml import etree

from boinc_app.atomic_file import write_atomically
from mlds.server.state import ServerState
from validator.checks import max_result_bytes
from workgen.datasets import get_dataset
from workgen.specs import make_spec
from workgen.templates import input_template, input_template_name, output_template, output_template_name

PROGRAMS = {  # bin/ name -> the mlds command it runs
    "mlds_workgen": ["workgen"],
    "mlds_validate": ["server", "validate"],
    "mlds_validate_service": ["server", "validate-service"],
    "mlds_assimilate": ["server", "assimilate"],
    "mlds_publish": ["server", "publish"],
}
SHIM = """#!{python}
# Written by `mlds server install`; BOINC runs it as bin/{name} (cwd tmp_<host>). It runs
# `mlds {command}` for the project this bin/ directory belongs to.
import os
import sys

BIN = os.path.dirname(os.path.realpath(__file__))
PROJECT = os.path.dirname(BIN)
# Python puts bin/ first on sys.path, and BOINC's bin/ holds assimilator.py, validator.py, ...
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != BIN]
{fast_path}sys.argv[1:1] = {command_words!r} + ["--project", PROJECT]
from mlds.cli import main

main(prog_name="{name}")
"""

VALIDATE_FAST_PATH = """from mlds.server.validation_client import ask_service

answer = ask_service(PROJECT, sys.argv[1:])  # the validation service, when it runs
if answer is not None:
    sys.stderr.write(answer[1])
    sys.exit(answer[0])
"""


class InstallError(RuntimeError):
    """The install cannot proceed (not a project, or an admin's edit in the way); says which."""


@dataclass(frozen=True)
class InstallConfig:
    project: str
    app: str = "mlds_trainer"
    datasets: tuple = ("DS1",)
    workgen_arguments: tuple = ()  # extra words for the work generator's daemon line
    publish_arguments: tuple = ()
    python: str = sys.executable
    tokens: bool = True  # False: script names alone, for a BOINC with the token bug
    merge_config: bool = False
    force: bool = False


@dataclass
class InstallReport:
    written: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    daemon_xml: str = ""
    config_merged: bool = False

    def describe(self):
        lines = [f"wrote {path}" for path in self.written] + [f"unchanged {path}" for path in self.unchanged]
        if not self.config_merged:
            lines += ["", "add these to config.xml (or run again with --merge-config):", self.daemon_xml]
        else:
            lines.append("config.xml: daemon and task lines merged")
        lines += ["", "next: bin/xadd (adds the app), add an app version, bin/start"]
        return "\n".join(lines)


def largest_result_bytes(datasets):
    """``max_nbytes`` for the output template: the largest honest result of any dataset served."""
    sizes = []
    for name in datasets:
        config = get_dataset(name)
        spec = make_spec(name, config.task_names()[0], networks=config.networks_per_workunit)
        sizes.append(max_result_bytes(spec))
    return max(sizes)


def planned_files(config):
    """``{path relative to the project: (text, executable)}``."""
    files = {
        os.path.join("templates", input_template_name(config.app, False)): (input_template(False), False),
        os.path.join("templates", input_template_name(config.app, True)): (input_template(True), False),
        os.path.join("templates", output_template_name(config.app)): (output_template(largest_result_bytes(config.datasets)), False),
    }
    for name, command in PROGRAMS.items():
        fast_path = VALIDATE_FAST_PATH if name == "mlds_validate" else ""
        text = SHIM.format(python=config.python, name=name, command=" ".join(command), command_words=command, fast_path=fast_path)
        files[os.path.join("bin", name)] = (text, True)
    return files


COBBLESTONE_SCALE = 200 / 86400e9  # BOINC's credits per FLOP (sched/credit.cpp)


def max_granted_credit(datasets):
    """The validator's ``--max_granted_credit``: the credit of the largest ``rsc_fpops_bound`` a
    workunit of these datasets gets, so a forged runtime cannot claim more than the bound."""
    from workgen.bounds import workunit_bounds

    bounds = []
    for name in datasets:
        config = get_dataset(name)
        spec = make_spec(name, config.task_names()[0], networks=config.networks_per_workunit)
        bounds.append(workunit_bounds(spec)["rsc_fpops_bound"])
    return round(max(bounds) * COBBLESTONE_SCALE, 1)


def daemon_entries(config):
    """``[(tag, cmd, output, pid_file or None)]``: the daemons and the periodic publish task."""
    app = config.app
    validate = "mlds_validate files result_id runtime" if config.tokens else "mlds_validate"
    assimilate = "mlds_assimilate wu_id files" if config.tokens else "mlds_assimilate"
    datasets = [word for name in config.datasets for word in ("--dataset", name)]
    workgen = shlex.join(["mlds_workgen", "--app", app, *datasets, *config.workgen_arguments])
    publish = shlex.join(["mlds_publish", *datasets, *config.publish_arguments])
    return [
        ("daemon", workgen, "mlds_workgen.log", "mlds_workgen.pid"),
        ("daemon", "mlds_validate_service", "mlds_validate_service.log", "mlds_validate_service.pid"),
        ("daemon", f'script_validator --app {app} --init_script "{validate}" --max_granted_credit {max_granted_credit(config.datasets)}',
         "mlds_validate.log", "mlds_validate.pid"),
        ("daemon", f'script_assimilator --app {app} --script "{assimilate}"', "mlds_assimilate.log", "mlds_assimilate.pid"),
        ("task", publish, "mlds_publish.log", None),
    ]


def _entry_element(tag, cmd, output, pid_file):
    element = etree.Element(tag)
    etree.SubElement(element, "cmd").text = cmd
    if tag == "task":
        etree.SubElement(element, "period").text = "1 hour"
    etree.SubElement(element, "output").text = output
    if pid_file:
        etree.SubElement(element, "pid_file").text = pid_file
    return element


def daemon_xml(config):
    return "\n".join(etree.tostring(_entry_element(*entry), encoding="unicode") for entry in daemon_entries(config))


def merge_config(project_root, config):
    """Add the entries to ``config.xml``; an entry with our ``<output>`` but another cmd is an edit."""
    path = os.path.join(project_root, "config.xml")
    tree = etree.parse(path, etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False))
    root = tree.getroot()
    changed = False
    for tag, cmd, output, pid_file in daemon_entries(config):
        parent = root.find(f"{tag}s")
        if parent is None:
            parent = etree.SubElement(root, f"{tag}s")
        ours = [e for e in parent.findall(tag) if (e.findtext("output") or "").strip() == output]
        if any((e.findtext("cmd") or "").strip() == cmd for e in ours):
            continue
        if ours and not config.force:
            raise InstallError(f"config.xml has a <{tag}> writing {output} with another command; keep it, or --force")
        for element in ours:
            parent.remove(element)
        parent.append(_entry_element(tag, cmd, output, pid_file))
        changed = True
    if changed:
        write_atomically(path, etree.tostring(tree, xml_declaration=False, encoding="unicode").encode() + b"\n")
    return changed


def add_app_to_project_xml(project_root, app):
    """The ``<app>`` entry in ``project.xml`` (written once; an existing entry is left as it is)."""
    path = os.path.join(project_root, "project.xml")
    tree = etree.parse(path, etree.XMLParser(resolve_entities=False, no_network=True))
    if any((e.findtext("name") or "").strip() == app for e in tree.getroot().findall("app")):
        return False
    element = etree.SubElement(tree.getroot(), "app")
    etree.SubElement(element, "name").text = app
    etree.SubElement(element, "user_friendly_name").text = "MLDS trainer"
    write_atomically(path, etree.tostring(tree, encoding="unicode").encode() + b"\n")
    return True


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_files(project_root, config, report):
    record_path = os.path.join(ServerState(project_root).root, "install.json")
    recorded = json.load(open(record_path)) if os.path.exists(record_path) else {}
    planned = {rel: (text.encode(), executable) for rel, (text, executable) in planned_files(config).items()}
    for rel, (data, _) in planned.items():  # check everything before writing anything
        path = os.path.join(project_root, rel)
        if os.path.exists(path):
            current = _sha256(open(path, "rb").read())
            if current not in (_sha256(data), recorded.get(rel)) and not config.force:
                raise InstallError(f"{path} differs from what mlds wrote (an admin's edit?); keep it, or --force")
    for rel, (data, executable) in planned.items():
        path = os.path.join(project_root, rel)
        if os.path.exists(path) and open(path, "rb").read() == data:
            report.unchanged.append(rel)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, data)
        if executable:
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        report.written.append(rel)
        recorded[rel] = _sha256(data)
    write_atomically(record_path, (json.dumps(recorded, indent=1, sort_keys=True) + "\n").encode())


def install(config):
    """Install mlds into the project at ``config.project``; returns an ``InstallReport``."""
    root = os.path.abspath(config.project)
    for needed in ("config.xml", "project.xml", "bin"):
        if not os.path.exists(os.path.join(root, needed)):
            raise InstallError(f"{root} has no {needed}: not a BOINC project made by make_project")
    ServerState(root).make_dirs()
    report = InstallReport(daemon_xml=daemon_xml(config))
    write_files(root, config, report)
    if add_app_to_project_xml(root, config.app):
        report.written.append("project.xml")
    if config.merge_config:
        report.config_merged = True
        if merge_config(root, config):
            report.written.append("config.xml")
    return report
