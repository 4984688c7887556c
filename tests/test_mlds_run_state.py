"""``mlds state pack`` / ``unpack`` (mlds.run_state) on hand-made run roots, and the run lock.

The end-to-end case (a real run stopped, packed, unpacked elsewhere and continued to the same
dataset) is in tests/test_mlds_engine.py; here the archive's contents and its refusals.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from mlds.cli import main
from mlds.run_state import MANIFEST_NAME, RunStateError, hold_root, pack, packed_members, unpack


def fake_root(root):
    """A run root: one assimilated workunit (result kept in work/), one in a slot, a store."""
    files = {
        "work/wu-a/spec.json": b"{}", "work/wu-a/result.h5": b"R" * 1000, "work/wu-a/verdict.json": b"{}",
        "work/wu-a/assimilated": b"", "work/wu-b/spec.json": b"{}", "work/wu-b/checkpoint.h5": b"C" * 100,
        "slots/wu-b/spec.json": b"{}", "slots/wu-b/result.h5.checkpoint": b"K" * 100, "store/DS1.h5": b"S" * 500,
        "store/DS1.journal/wu-a.h5": b"J" * 50, "releases/MLDS-DS1-8.tar.gz": b"X", "status.html": b"<html>",
        "work/.wu-c.tmp-1/spec.json": b"{}",  # a killed create's temporary
    }  # fmt: skip
    for name, payload in files.items():
        os.makedirs(os.path.dirname(root / name), exist_ok=True)
        (root / name).write_bytes(payload)
    return root


def test_the_archive_keeps_what_continues_the_run_and_drops_what_the_store_holds(tmp_path):
    root = fake_root(tmp_path / "run")
    assert packed_members(str(root)) == [
        "store/DS1.h5", "store/DS1.journal/wu-a.h5", "work/wu-a/assimilated", "work/wu-a/spec.json",
        "work/wu-a/verdict.json", "work/wu-b/checkpoint.h5", "work/wu-b/spec.json", "slots/wu-b/result.h5.checkpoint",
        "slots/wu-b/spec.json",
    ]  # fmt: skip
    manifest = pack(str(root), str(tmp_path / "run.tar.gz"))
    assert (manifest["workunits"], manifest["assimilated"], manifest["files"]) == (2, 1, 9)
    target = tmp_path / "elsewhere"
    assert unpack(str(tmp_path / "run.tar.gz"), str(target)) == manifest
    assert (target / "slots/wu-b/result.h5.checkpoint").read_bytes() == b"K" * 100
    assert (target / "store/DS1.h5").read_bytes() == b"S" * 500
    assert not (target / "work/wu-a/result.h5").exists() and not (target / "releases").exists()


def test_a_root_in_use_is_neither_packed_nor_run_twice(tmp_path):
    root = fake_root(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom mlds.run_state import hold_root\n"
                               f"with hold_root({str(root)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"  # the other process holds the lock now
        with pytest.raises(RunStateError, match=rf"in use by another mlds process \(pid {holder.pid}\)"):
            pack(str(root), str(tmp_path / "run.tar.gz"))
        assert not (tmp_path / "run.tar.gz").exists()
        shutil.rmtree(root / "store")  # the fake store is no HDF5 file; the run reads the store before it starts
        done = CliRunner().invoke(main, ["run", "--machine", "ParityMachine", "--networks", "1", "--root", str(root)])
        assert done.exit_code == 1 and f"in use by another mlds process (pid {holder.pid})" in done.output
        assert sorted(os.listdir(root / "slots")) == ["wu-b"]  # nothing started
    finally:
        holder.kill()
        holder.wait()
    with hold_root(str(root)):  # released with its holder
        pass


def test_unpack_writes_into_an_empty_root_only(tmp_path):
    root = fake_root(tmp_path / "run")
    pack(str(root), str(tmp_path / "run.tar.gz"))
    with pytest.raises(RunStateError, match="already holds a run"):
        unpack(str(tmp_path / "run.tar.gz"), str(root))


def hostile_archive(path, members, manifest=None):
    manifest = manifest or {"format": "mlds-run-state", "format_version": 1, "workunits": 0, "assimilated": 0}
    with tarfile.open(path, "w:gz") as archive:
        payload = json.dumps(manifest).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
        for info in members:
            archive.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def member(name, kind=tarfile.REGTYPE, size=1, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, linkname
    return info


@pytest.mark.parametrize("members, reason", [
    ([member("store/../../escaped")], "outside|not a readable"),
    ([member("/etc/evil")], "outside"),
    ([member("store/link", tarfile.SYMTYPE, linkname="/etc/passwd")], "not a readable"),
    ([member("bin/tool")], "outside store, work, slots"),
    ([member("store/fine.h5"), member("store/link", tarfile.SYMTYPE, linkname="/etc/passwd")], "not a readable"),
])  # fmt: skip
def test_hostile_archives_are_refused_and_write_nothing_outside(tmp_path, members, reason):
    archive = hostile_archive(tmp_path / "bad.tar.gz", members)
    target = tmp_path / "deep" / "root"
    with pytest.raises(RunStateError, match=reason):
        unpack(str(archive), str(target))
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    assert not (target / "store").exists()  # checked before anything was written


def test_unknown_archive_versions_and_non_archives_are_refused(tmp_path):
    newer = hostile_archive(tmp_path / "v2.tar.gz", [], {"format": "mlds-run-state", "format_version": 2})
    with pytest.raises(RunStateError, match="format_version 2 is not known"):
        unpack(str(newer), str(tmp_path / "a"))
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(RunStateError, match="not a readable run archive"):
        unpack(str(tmp_path / "junk.tar.gz"), str(tmp_path / "b"))
    plain = hostile_archive(tmp_path / "other.tar.gz", [], {"format": "something else"})
    with pytest.raises(RunStateError, match="not an mlds run archive"):
        unpack(str(plain), str(tmp_path / "c"))


def test_the_commands_say_what_they_did_and_why_they_refuse(tmp_path):
    root = fake_root(tmp_path / "run")
    done = CliRunner().invoke(main, ["state", "pack", "--root", str(root), "-o", str(tmp_path / "run.tar.gz")])
    assert done.exit_code == 0 and "2 workunits (1 assimilated), 9 files" in done.output
    done = CliRunner().invoke(main, ["state", "unpack", str(tmp_path / "run.tar.gz"), "--root", str(tmp_path / "new")])
    assert done.exit_code == 0 and "continue with the same mlds run command" in done.output
    done = CliRunner().invoke(main, ["state", "pack", "--root", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.tar.gz")])
    assert done.exit_code == 1 and "holds no mlds run" in done.output
