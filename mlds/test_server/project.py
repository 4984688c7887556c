"""The test project directory: a real BOINC project's layout, so the same habits apply to both.

    PROJECT/config.xml             BOINC-shaped: <config> (long_name, uldl_dir_fanout), the
                                   <daemons> lines an admin would paste into a real config.xml,
                                   and <test_server> (the account key clients attach with)
    PROJECT/keys/                  code_sign_private (0600), code_sign_public: BOINC's text format
    PROJECT/download/<hex>/NAME    app files and staged input files (the download hierarchy)
    PROJECT/upload/<hex>/NAME      uploaded output files (the upload hierarchy)
    PROJECT/templates/             create_work input/output templates (<app>_in, <app>_out)
    PROJECT/bin/                   the scripts the daemons run as ../bin/<script> (mlds_validate,
                                   mlds_assimilate), as script_validator/script_assimilator do
    PROJECT/store/                 the dataset store the assimilator writes
    PROJECT/db.sqlite              workunits, results, hosts, app versions (``db``)

``<hex>`` is BOINC's ``dir_hier_path`` fan-out: the md5 of the file *name*, hex digits 1..7 read
as an integer, modulo ``uldl_dir_fanout``, in lowercase hex. URLs are not stored: the server builds
them from the address it listens on, so the same project can be served on any loopback port.

The daemons build their command lines as text passed to ``/bin/sh -c`` (BOINC uses ``system()``),
so the project path must not contain whitespace or shell metacharacters; ``init_project`` refuses
such paths instead of letting a daemon mis-split them later.
"""

import hashlib
import os
import re
import secrets
import shlex
import shutil
import stat
import sys
from dataclasses import dataclass

from lxml import etree

from mlds.test_server import db, keys
from mlds.test_server.errors import ProjectError
from mlds.test_server.xmlsafe import parse_xml

DEFAULT_APP = "mlds_trainer"
DEFAULT_FANOUT = 1024
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+:@%,=-]+$")
PHYSICAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,250}$")
DEFAULT_MAX_RESULT_BYTES = 64 << 20

INPUT_TEMPLATE = """<input_template>
    <file_info>
    </file_info>
    <workunit>
        <file_ref>
            <open_name>spec.json</open_name>
        </file_ref>
        <rsc_fpops_est>1e12</rsc_fpops_est>
        <rsc_fpops_bound>1e15</rsc_fpops_bound>
        <rsc_memory_bound>2e9</rsc_memory_bound>
        <rsc_disk_bound>2e9</rsc_disk_bound>
        <delay_bound>604800</delay_bound>
    </workunit>
</input_template>
"""

OUTPUT_TEMPLATE = f"""<output_template>
    <file_info>
        <name><OUTFILE_0/></name>
        <generated_locally/>
        <upload_when_present/>
        <max_nbytes>{DEFAULT_MAX_RESULT_BYTES}</max_nbytes>
        <url><UPLOAD_URL/></url>
    </file_info>
    <result>
        <file_ref>
            <file_name><OUTFILE_0/></file_name>
            <open_name>result.h5</open_name>
        </file_ref>
    </result>
</output_template>
"""

VALIDATE_SHIM = """#!/bin/sh
# script_validator --app {app} --init_script "mlds_validate files result_id"
# runs this as ../bin/mlds_validate RESULT_FILE RESULT_ID. The workunit's spec is its first input
# file; failing to find it is a transient error (3). Exit codes are `mlds validate`'s: 0 valid,
# 1 invalid, 3 transient.
spec=$({python} -m mlds.cli test-server input-path --project {project} --result-id "$2") || exit 3
exec {python} -m mlds.cli validate "$spec" "$1"
"""

ASSIMILATE_SHIM = """#!/bin/sh
# script_assimilator --app {app} --script "mlds_assimilate wu_id files"
# runs this as ../bin/mlds_assimilate WU_ID RESULT_FILE, or for a failed workunit as
# ../bin/mlds_assimilate --error MASK WU_NAME WU_ID BATCH_ID. Exit 0 = handled (stored, already
# stored, or failure recorded); anything else stops the assimilator daemon.
exec {python} -m mlds.cli assimilate --store {store} "$@"
"""

LAUNCHER = """#!/bin/sh
# The mlds trainer as a BOINC main program, for the test project server (the frozen trainer of
# the packaging step replaces it). The client runs it from the project directory with the slot as
# the working directory; spec.json and result.h5 are the logical names of the workunit's input and
# the result's output (boinc_app.filenames), which the trainer resolves itself.
exec {python} -m boinc_app.main spec.json -o result.h5 "$@"
"""


@dataclass(frozen=True)
class ProjectConfig:
    root: str
    long_name: str
    fanout: int
    authenticator: str
    daemons: tuple  # the <daemon><cmd> lines

    @property
    def download_dir(self):
        return os.path.join(self.root, "download")

    @property
    def upload_dir(self):
        return os.path.join(self.root, "upload")

    @property
    def keys_dir(self):
        return os.path.join(self.root, "keys")

    @property
    def bin_dir(self):
        return os.path.join(self.root, "bin")

    @property
    def db_path(self):
        return os.path.join(self.root, "db.sqlite")

    @property
    def public_key_path(self):
        return os.path.join(self.keys_dir, "code_sign_public")

    @property
    def private_key_path(self):
        return os.path.join(self.keys_dir, "code_sign_private")

    def connect(self):
        return db.connect(self.db_path)

    def public_key_text(self):
        with open(self.public_key_path, encoding="ascii") as handle:
            return handle.read()

    def download_path(self, name):
        return dir_hier_path(name, self.download_dir, self.fanout)

    def upload_path(self, name):
        return dir_hier_path(name, self.upload_dir, self.fanout)


def fanout_dir(name, fanout):
    """BOINC's ``filename_hash``: the md5 of the name, hex digits 1..7, modulo the fan-out, in hex."""
    digest = hashlib.md5(name.encode("utf-8")).hexdigest()
    return format(int(digest[1:8], 16) % fanout, "x")


def dir_hier_path(name, root, fanout):
    check_physical_name(name)
    if fanout == 0:
        return os.path.join(root, name)
    return os.path.join(root, fanout_dir(name, fanout), name)


def dir_hier_url(name, base_url, fanout):
    if fanout == 0:
        return f"{base_url}/{name}"
    return f"{base_url}/{fanout_dir(name, fanout)}/{name}"


def check_physical_name(name):
    """Physical file names become paths and URLs: one component, no '..', no control characters."""
    if not isinstance(name, str) or not PHYSICAL_NAME.match(name) or ".." in name:
        raise ProjectError(f"file name {str(name)[:80]!r} is not a valid physical name (letters, digits, _ . + -)")
    return name


def daemon_lines(app):
    return (
        f'script_validator --app {app} --init_script "mlds_validate files result_id"',
        f'script_assimilator --app {app} --script "mlds_assimilate wu_id files"',
    )


def write_config(config):
    root = etree.Element("boinc")
    section = etree.SubElement(root, "config")
    etree.SubElement(section, "long_name").text = config.long_name
    etree.SubElement(section, "uldl_dir_fanout").text = str(config.fanout)
    daemons = etree.SubElement(root, "daemons")
    for line in config.daemons:
        etree.SubElement(etree.SubElement(daemons, "daemon"), "cmd").text = line
    etree.SubElement(etree.SubElement(root, "test_server"), "authenticator").text = config.authenticator
    path = os.path.join(config.root, "config.xml")
    with open(path, "wb") as handle:
        handle.write(etree.tostring(root, pretty_print=True))


def load_project(root):
    """The ``ProjectConfig`` of an initialised project directory; raises ``ProjectError``."""
    root = os.path.abspath(root)
    path = os.path.join(root, "config.xml")
    if not os.path.isfile(path):
        raise ProjectError(f"{root} is not a test project (no config.xml); run `mlds test-server init --project {root}`")
    with open(path, "rb") as handle:
        tree = parse_xml(handle.read(1 << 20), "config.xml", error=ProjectError)
    try:
        fanout = int(tree.findtext("config/uldl_dir_fanout", str(DEFAULT_FANOUT)))
    except ValueError:
        raise ProjectError("config.xml: uldl_dir_fanout is not an integer") from None
    config = ProjectConfig(
        root=root,
        long_name=tree.findtext("config/long_name", "mlds test project"),
        fanout=fanout,
        authenticator=tree.findtext("test_server/authenticator", ""),
        daemons=tuple((e.text or "").strip() for e in tree.findall("daemons/daemon/cmd")),
    )
    if not config.authenticator or not os.path.isfile(config.db_path):
        raise ProjectError(f"{root}: config.xml has no authenticator or db.sqlite is missing")
    return config


def check_shell_safe(path, what):
    if not SAFE_PATH.match(path):
        raise ProjectError(
            f"{what} {path!r} holds whitespace or shell metacharacters; the daemons pass it through "
            "/bin/sh like BOINC's system() calls, so choose a plain path"
        )


def init_project(root, app=DEFAULT_APP, store=None, long_name="mlds test project", python=None):
    """Create a project directory: keys, hierarchy, templates, daemon scripts, database."""
    root = os.path.abspath(root)
    store = os.path.abspath(store or os.path.join(root, "store"))
    python = python or sys.executable
    for path, what in ((root, "project path"), (store, "store path"), (python, "python path")):
        check_shell_safe(path, what)
    if os.path.exists(os.path.join(root, "config.xml")):
        raise ProjectError(f"{root} already holds a project (config.xml exists)")
    config = ProjectConfig(root, long_name, DEFAULT_FANOUT, secrets.token_hex(16), daemon_lines(app))
    for folder in (config.download_dir, config.upload_dir, config.bin_dir, os.path.join(root, "templates"), store):
        os.makedirs(folder, exist_ok=True)
    keys.write_key_pair(config.keys_dir)
    _write_text(os.path.join(root, "templates", f"{app}_in"), INPUT_TEMPLATE)
    _write_text(os.path.join(root, "templates", f"{app}_out"), OUTPUT_TEMPLATE)
    values = {"app": app, "python": shlex.quote(python), "project": shlex.quote(root), "store": shlex.quote(store)}
    _write_text(os.path.join(config.bin_dir, "mlds_validate"), VALIDATE_SHIM.format(**values), executable=True)
    _write_text(os.path.join(config.bin_dir, "mlds_assimilate"), ASSIMILATE_SHIM.format(**values), executable=True)
    connection = db.connect(config.db_path)
    try:
        db.create_schema(connection)
    finally:
        connection.close()
    write_config(config)  # last: its presence marks a complete project
    return config


def write_launcher(path, python=None):
    """Write the shell main program that runs the trainer from this Python environment."""
    python = python or sys.executable
    _write_text(path, LAUNCHER.format(python=shlex.quote(python)), executable=True)
    return path


def _write_text(path, text, executable=False):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    if executable:
        mode = os.stat(path).st_mode
        os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def place_file(source, target, move=False):
    """Put ``source`` at ``target`` (a hierarchy path); an identical file there is fine, a different one is not."""
    if os.path.exists(target):
        if keys.file_md5(target) != keys.file_md5(source):
            raise ProjectError(f"{os.path.basename(target)} already exists with different content; physical names never change")
        if move and os.path.abspath(source) != os.path.abspath(target):
            os.unlink(source)
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = f"{target}.tmp-{os.getpid()}"
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)
    if move:
        os.unlink(source)
    return target


def stage_file(config, path, copy=False):
    """``bin/stage_file``: move (or copy) a file into the download hierarchy; returns its physical name."""
    if not os.path.isfile(path):
        raise ProjectError(f"{path}: no such file")
    name = check_physical_name(os.path.basename(path))
    place_file(path, config.download_path(name), move=not copy)
    return name
