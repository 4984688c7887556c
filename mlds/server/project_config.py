"""A BOINC project's ``config.xml``, read once into a frozen ``ProjectConfig``.

Every mlds program that runs inside a real BOINC project (the work generator daemon, the scripts
behind ``script_validator`` and ``script_assimilator``, the publish step, the installer) needs the
same few facts: where the project is, its database, its download hierarchy and the host name that
``bin/start`` uses to name the log, pid and tmp directories. BOINC keeps them in
``PROJECT/config.xml`` (``<boinc><config>...</config><daemons>...</daemons></boinc>``); this module
is the one place that reads it, with lxml and no network access (entities are not resolved).
"""

import os
from dataclasses import dataclass

from lxml import etree

CONFIG_NAME = "config.xml"


class ProjectConfigError(ValueError):
    """config.xml is missing, unreadable or lacks a field mlds needs; the message says which."""


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    name: str
    user: str
    password: str

    def connect_arguments(self):
        return dict(host=self.host, port=self.port, user=self.user, password=self.password, database=self.name)


@dataclass(frozen=True)
class ProjectConfig:
    root: str  # the project directory (absolute)
    host: str  # <host>: bin/start's log_<host>/, pid_<host>/, tmp_<host>/
    database: Database
    download_dir: str
    upload_dir: str
    fanout: int
    daemons: tuple  # the <daemon><cmd> lines

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def bin_dir(self):
        return self.path("bin")

    @property
    def stop_file(self):
        """BOINC daemons exit when this file exists (``bin/stop`` writes it)."""
        return self.path("stop_daemons")

    @property
    def log_dir(self):
        return self.path(f"log_{self.host}")


def _text(config, tag, default=None):
    element = config.find(tag)
    if element is None or element.text is None or not element.text.strip():
        if default is None:
            raise ProjectConfigError(f"{CONFIG_NAME} has no <{tag}> in <config>")
        return default
    return element.text.strip()


def parse_db_host(value):
    """BOINC's ``<db_host>`` is ``host`` or ``host:port`` (MySQL's default port 3306)."""
    host, _, port = value.partition(":")
    if port and not port.isdigit():
        raise ProjectConfigError(f"<db_host> {value!r}: the port is not a number")
    return host or "localhost", int(port or 3306)


def load_project_config(root):
    """Read ``ROOT/config.xml``; raises ``ProjectConfigError`` naming what is missing."""
    root = os.path.abspath(os.fspath(root))
    path = os.path.join(root, CONFIG_NAME)
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        document = etree.parse(path, parser).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise ProjectConfigError(f"cannot read {path}: {exc}") from None
    config = document.find("config")
    if config is None:
        raise ProjectConfigError(f"{path} has no <config> element; is {root} a BOINC project?")
    host, port = parse_db_host(_text(config, "db_host", "localhost"))
    database = Database(host, port, _text(config, "db_name"), _text(config, "db_user"), _text(config, "db_passwd", ""))
    fanout = _text(config, "uldl_dir_fanout", "1024")
    if not fanout.isdigit() or int(fanout) < 1:
        raise ProjectConfigError(f"<uldl_dir_fanout> {fanout!r} is not a positive number")
    return ProjectConfig(
        root=root,
        host=_text(config, "host"),
        database=database,
        download_dir=_text(config, "download_dir", os.path.join(root, "download")),
        upload_dir=_text(config, "upload_dir", os.path.join(root, "upload")),
        fanout=int(fanout),
        daemons=tuple(cmd.text.strip() for cmd in document.iterfind("daemons/daemon/cmd") if cmd.text),
    )
