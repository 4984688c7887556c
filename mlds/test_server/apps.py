"""App versions: signed files in the download hierarchy, as ``bin/update_versions`` would leave them.

What the 7.20 client demands of an app version it downloads (reference §4.1, §3.6): every file has
a ``<file_signature>`` made with the project's code-signing key, an ``nbytes`` and ``md5_cksum``
that match, the main program is ``<executable/>``, and the version declares an ``api_version``
(7.20.0 here, so the client talks to the app through ``boinc_mmap_file``, which a pure-Python app can
open). Like ``update_versions``, every file of a version is marked executable, a ``<file>.sig``
next to a file is used as its signature (so the private key can stay offline) and checked against
the public key, and a physical name that already exists with other content is refused: physical
names never change.
"""

import os
from dataclasses import dataclass

from mlds.test_server import db, keys
from mlds.test_server.errors import ProjectError
from mlds.test_server.project import check_physical_name, place_file

DEFAULT_API_VERSION = "7.20.0"


@dataclass(frozen=True)
class AppVersionSpec:
    """What ``mlds test-server add-app`` was asked for; ``files[main]`` is the main program."""

    app: str
    version_num: int
    platform: str
    files: tuple
    main: int = 0
    plan_class: str = ""
    api_version: str = DEFAULT_API_VERSION
    avg_ncpus: float = 1.0
    cmdline: str = ""
    user_friendly_name: str = ""
    logical_names: tuple = ()  # (file name, logical name) pairs: the name the file has in the slot


def file_signature(config, path):
    """The signature text of ``path``: its ``.sig`` file if present (checked), else signed with the project key."""
    md5 = keys.file_md5(path)
    public_key = keys.load_public_key(config.public_key_text(), config.public_key_path)
    signature_path = f"{path}.sig"
    if os.path.exists(signature_path):
        with open(signature_path, encoding="ascii") as handle:
            signature = handle.read(4096)
    elif os.path.exists(config.private_key_path):
        with open(config.private_key_path, encoding="ascii") as handle:
            signature = keys.sign_md5(md5, keys.load_private_key(handle.read(), config.private_key_path))
    else:
        raise ProjectError(f"{path}: no {signature_path} and no private key in {config.keys_dir} to sign it with")
    if not keys.signature_matches(md5, signature, public_key):
        raise ProjectError(f"{signature_path}: does not match the file with the project's public key")
    return signature


def sign_files(private_key_path, paths):
    """``sign_executable`` for each path: write ``<path>.sig``; returns the signature paths."""
    with open(private_key_path, encoding="ascii") as handle:
        private_key = keys.load_private_key(handle.read(), private_key_path)
    written = []
    for path in paths:
        with open(f"{path}.sig", "w", encoding="ascii") as handle:
            handle.write(keys.sign_file(path, private_key))
        written.append(f"{path}.sig")
    return written


def add_app_version(config, spec):
    """Sign and place the files of ``spec`` and register the version; returns its id."""
    if not spec.files:
        raise ProjectError("an app version needs at least one file")
    if not 0 <= spec.main < len(spec.files):
        raise ProjectError("the main program must be one of the files")
    rows = [_file_row(config, path, position, position == spec.main) for position, path in enumerate(spec.files)]
    if len({row["name"] for row in rows}) != len(rows):
        raise ProjectError("two files of the version have the same name")
    logical = dict(spec.logical_names)
    unknown = sorted(set(logical) - {row["name"] for row in rows})
    if unknown:
        raise ProjectError(f"logical name for {', '.join(unknown)}: not a file of the version")
    for row in rows:
        row["logical_name"] = check_physical_name(logical[row["name"]]) if row["name"] in logical else ""
    connection = config.connect()
    try:
        with db.transaction(connection):
            appid = _app_id(connection, spec)
            version_id = _insert_version(connection, appid, spec)
            for row, path in zip(rows, spec.files):
                place_file(path, config.download_path(row["name"]))
                db.insert(connection, "app_version_file", app_version_id=version_id, **row)
        return version_id
    finally:
        connection.close()


def _file_row(config, path, position, main):
    if not os.path.isfile(path):
        raise ProjectError(f"{path}: no such file")
    name = check_physical_name(os.path.basename(path))
    return {
        "position": position,
        "name": name,
        "main_program": int(main),
        "nbytes": os.path.getsize(path),
        "md5": keys.file_md5(path),
        "signature": file_signature(config, path),
    }


def _app_id(connection, spec):
    row = connection.execute("SELECT id FROM app WHERE name = ?", (spec.app,)).fetchone()
    if row:
        return row["id"]
    check_physical_name(spec.app)
    return db.insert(connection, "app", name=spec.app, user_friendly_name=spec.user_friendly_name or spec.app)


def _insert_version(connection, appid, spec):
    clash = connection.execute(
        "SELECT id FROM app_version WHERE appid = ? AND version_num = ? AND platform = ? AND plan_class = ?",
        (appid, spec.version_num, spec.platform, spec.plan_class),
    ).fetchone()
    if clash:
        raise ProjectError(f"{spec.app} version {spec.version_num} for {spec.platform} {spec.plan_class} exists already")
    return db.insert(
        connection,
        "app_version",
        appid=appid,
        version_num=spec.version_num,
        platform=spec.platform,
        plan_class=spec.plan_class,
        api_version=spec.api_version,
        avg_ncpus=spec.avg_ncpus,
        cmdline=spec.cmdline,
    )
