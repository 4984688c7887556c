"""App versions of the frozen trainer (``mlds package app-version``), their signatures
(``mlds package keygen`` / ``sign`` / ``verify``) and plan classes (``mlds package plan-classes``).

Fast: a stand-in bundle (a shell script as ``mlds-train`` plus ``_internal/``) instead of the
660 MB frozen trainer, which tests/test_packaging_e2e.py runs through the real server and client.
The signatures are also checked with BOINC's own ``crypt_prog`` from the built server.
"""

import hashlib
import os
import subprocess
import tarfile

import pytest
from click.testing import CliRunner
from lxml import etree

from mlds import codesign
from mlds.cli import main
from mlds.package.appversion import AppVersionError, AppVersionLayout, lay_out, version_num
from mlds.package.plan_class import amd_opencl, cpu_mt, cuda, plan_classes_xml
from mlds.package.signing import app_files, sign_apps, verify_apps

from tests.conftest import PLATFORM  # the stand-in ``bundle`` fixture is conftest's too


def lay(bundle, apps, **options):
    return lay_out(AppVersionLayout(PLATFORM, "1.02", **options), str(bundle), str(apps))


def test_layout_is_what_update_versions_reads(bundle, tmp_path):
    done = lay(bundle, tmp_path / "apps", plan_class="mt")
    directory = tmp_path / "apps" / "mlds" / "1.02" / f"{PLATFORM}__mt"
    assert done.directory == str(directory)
    assert sorted(os.listdir(directory)) == ["mlds_1.02_x86_64-pc-linux-gnu__mt.sh", "mlds_1.02_x86_64-pc-linux-gnu__mt.tar.gz", "version.xml"]
    root = etree.parse(str(directory / "version.xml")).getroot()
    assert root.tag == "version" and root.findtext("api_version") == "7.20.0"
    files = root.findall("file")
    assert [f.findtext("physical_name") for f in files] == [os.path.basename(p) for p in done.files]
    assert [f.findtext("logical_name") for f in files] == ["mlds-boot", "mlds-train.tar.gz"]
    assert [f.find("main_program") is not None for f in files] == [True, False]
    assert all(f.find("copy_file") is None for f in files)  # the bootstrap reads the archive where it is
    assert os.access(done.files[0], os.X_OK)
    assert done.unpacked_bytes == sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())


def test_archive_is_deterministic_and_holds_the_bundle_tree(bundle, tmp_path):
    first, second = lay(bundle, tmp_path / "a"), lay(bundle, tmp_path / "b")
    os.utime(bundle / "mlds-train", (1, 1))  # mtimes do not matter
    third = lay(bundle, tmp_path / "c")
    digests = {hashlib.sha256(open(d.files[1], "rb").read()).hexdigest() for d in (first, second, third)}
    assert len(digests) == 1
    with tarfile.open(first.files[1]) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert sorted(members) == ["mlds-train", "mlds-train/_internal", "mlds-train/_internal/data.txt", "mlds-train/_internal/sub",
                               "mlds-train/_internal/sub/lib.so", "mlds-train/mlds-train"]  # fmt: skip
    assert members["mlds-train/mlds-train"].mode == 0o755 and members["mlds-train/_internal/data.txt"].mode == 0o644
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


@pytest.mark.parametrize("version", ["1", "1.2", "1.002", "a.00", "1.00 "])
def test_versions_are_x_yy(version):
    with pytest.raises(AppVersionError):
        version_num(version)


def test_version_num():
    assert version_num("1.02") == 102 and version_num("12.34") == 1234


@pytest.mark.parametrize("options", [dict(plan_class="a__b"), dict(app="../x"), dict(platform="x y")])
def test_names_that_would_break_the_layout_are_refused(options):
    with pytest.raises(AppVersionError):
        AppVersionLayout(**{"platform": PLATFORM, "version": "1.00", **options})


def test_a_laid_out_version_is_never_overwritten(bundle, tmp_path):
    lay(bundle, tmp_path / "apps")
    with pytest.raises(AppVersionError, match="new version"):
        lay(bundle, tmp_path / "apps")


def test_not_a_bundle_is_refused(tmp_path):
    with pytest.raises(AppVersionError, match="no executable"):
        lay(tmp_path, tmp_path / "apps")


# -- the bootstrap, started as the client starts it ----------------------------------------------


def client_dirs(done, root):
    """A BOINC data directory: the version's files downloaded into projects/P/, and slots/."""
    project = root / "projects" / "127.0.0.1_mlds"
    project.mkdir(parents=True)
    for path in done.files:
        os.link(path, project / os.path.basename(path))
    return project


def start_in_slot(root, project, bootstrap, slot, *args, wait=True):
    directory = root / "slots" / str(slot)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "init_data.xml").write_text(f"<app_init_data><project_dir>{project}</project_dir></app_init_data>\n")
    command = [f"../../projects/{project.name}/{bootstrap}", *args]
    if not wait:
        return subprocess.Popen(command, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=60)


def test_bootstrap_unpacks_once_per_version_and_execs_in_the_slot(bundle, tmp_path):
    done = lay(bundle, tmp_path / "apps")
    project = client_dirs(done, tmp_path / "boinc")
    bootstrap = os.path.basename(done.files[0])
    first = start_in_slot(tmp_path / "boinc", project, bootstrap, 0, "--extra")
    assert first.returncode == 0, first.stderr
    assert "mlds-boot: unpacked mlds_1.02_x86_64-pc-linux-gnu.tar.gz" in first.stderr
    assert first.stdout.splitlines() == ["args: spec.json -o result.h5 --extra", f"cwd: {tmp_path / 'boinc' / 'slots' / '0'}",
                                         "internal: bundle data"]  # fmt: skip
    link = project / "mlds_1.02_x86_64-pc-linux-gnu.unpacked"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    later = start_in_slot(tmp_path / "boinc", project, bootstrap, 1)
    assert later.returncode == 0 and later.stderr == "", later.stderr  # no unpacking again
    assert os.listdir(tmp_path / "boinc" / "slots" / "1") == ["init_data.xml"]  # nothing of the bundle in the slot


def test_concurrent_first_tasks_leave_one_tree(bundle, tmp_path):
    done = lay(bundle, tmp_path / "apps")
    project = client_dirs(done, tmp_path / "boinc")
    bootstrap = os.path.basename(done.files[0])
    tasks = [start_in_slot(tmp_path / "boinc", project, bootstrap, slot, wait=False) for slot in range(4)]
    outputs = [task.communicate(timeout=60) for task in tasks]
    assert [task.returncode for task in tasks] == [0] * 4, outputs
    assert all("internal: bundle data" in out for out, _ in outputs)
    names = sorted(os.listdir(project))
    trees = [n for n in names if ".unpacked." in n]
    assert len(trees) == 1 and not any(n.endswith(".partial") for n in names), names


def test_bootstrap_removes_dead_unpacks_and_versions_the_client_deleted(bundle, tmp_path):
    done = lay(bundle, tmp_path / "apps")
    project = client_dirs(done, tmp_path / "boinc")
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    (project / f"mlds_1.02_x86_64-pc-linux-gnu.unpacked.{dead}.partial" / "x").mkdir(parents=True)
    (project / "mlds_0.99_x86_64-pc-linux-gnu.unpacked.7" / "mlds-train").mkdir(parents=True)
    os.symlink("mlds_0.99_x86_64-pc-linux-gnu.unpacked.7", project / "mlds_0.99_x86_64-pc-linux-gnu.unpacked")
    (project / "mlds_0.98_x86_64-pc-linux-gnu.unpacked.8").mkdir()  # still has its archive: kept
    os.symlink("mlds_0.98_x86_64-pc-linux-gnu.unpacked.8", project / "mlds_0.98_x86_64-pc-linux-gnu.unpacked")
    (project / "mlds_0.98_x86_64-pc-linux-gnu.tar.gz").write_bytes(b"")
    assert start_in_slot(tmp_path / "boinc", project, os.path.basename(done.files[0]), 0).returncode == 0
    names = set(os.listdir(project))
    assert not any("0.99" in n or n.endswith(".partial") for n in names), names
    assert {"mlds_0.98_x86_64-pc-linux-gnu.unpacked", "mlds_0.98_x86_64-pc-linux-gnu.unpacked.8"} <= names


def test_bootstrap_fails_with_a_reason_when_the_archive_is_broken(bundle, tmp_path):
    done = lay(bundle, tmp_path / "apps")
    project = client_dirs(done, tmp_path / "boinc")
    archive = project / os.path.basename(done.files[1])
    archive.unlink()
    archive.write_bytes(b"not a tar.gz")
    failed = start_in_slot(tmp_path / "boinc", project, os.path.basename(done.files[0]), 0)
    assert failed.returncode == 1 and "mlds-boot: cannot unpack" in failed.stderr
    assert [n for n in os.listdir(project) if ".unpacked" in n] == []


# -- signing -----------------------------------------------------------------------------------


@pytest.fixture
def signed(bundle, tmp_path):
    keys = tmp_path / "keys"
    runner = CliRunner()
    assert runner.invoke(main, ["package", "keygen", "--dir", str(keys)]).exit_code == 0
    assert (keys / "code_sign_private").stat().st_mode & 0o777 == 0o600
    apps = tmp_path / "apps"
    assert runner.invoke(main, ["package", "app-version", "--platform", PLATFORM, "--version", "1.02", "--bundle", str(bundle),
                                "--out", str(apps)]).exit_code == 0  # fmt: skip
    result = runner.invoke(main, ["package", "sign", "--key", str(keys / "code_sign_private"), "--apps", str(apps)])
    assert result.exit_code == 0 and "signed 2 files" in result.output, result.output
    return keys, apps


def test_every_app_file_gets_a_signature_that_the_public_key_verifies(signed):
    keys, apps = signed
    files = app_files(apps)
    assert [os.path.basename(f) for f in files] == ["mlds_1.02_x86_64-pc-linux-gnu.sh", "mlds_1.02_x86_64-pc-linux-gnu.tar.gz"]
    public = codesign.load_public_key((keys / "code_sign_public").read_text())
    for path in files:
        assert codesign.signature_matches(codesign.file_md5(path), open(f"{path}.sig").read(), public)
    assert not os.path.exists(os.path.join(os.path.dirname(files[0]), "version.xml.sig"))
    result = CliRunner().invoke(main, ["package", "verify", "--key", str(keys / "code_sign_public"), "--apps", str(apps)])
    assert result.exit_code == 0 and result.output.count("valid: ") == 2


def test_a_changed_file_or_another_key_fails_verification(signed, tmp_path):
    keys, apps = signed
    path = app_files(apps)[0]
    with open(path, "a") as handle:
        handle.write("# changed\n")
    assert verify_apps(keys / "code_sign_public", apps) == {path: False, app_files(apps)[1]: True}
    result = CliRunner().invoke(main, ["package", "verify", "--key", str(keys / "code_sign_public"), "--apps", str(apps)])
    assert result.exit_code == 1 and "INVALID" in result.output
    codesign.write_key_pair(tmp_path / "other")
    assert not any(verify_apps(tmp_path / "other" / "code_sign_public", apps).values())


def test_signing_again_replaces_the_signatures(signed):
    keys, apps = signed
    path = app_files(apps)[0]
    with open(path, "a") as handle:
        handle.write("# changed\n")
    sign_apps(keys / "code_sign_private", apps)
    assert all(verify_apps(keys / "code_sign_public", apps).values())
    assert not any(name.endswith(".partial") for name in os.listdir(os.path.dirname(path)))


def test_keygen_refuses_to_overwrite_and_sign_refuses_a_bad_key(signed, tmp_path):
    keys, apps = signed
    result = CliRunner().invoke(main, ["package", "keygen", "--dir", str(keys)])
    assert result.exit_code == 1 and "not overwriting" in result.output
    bad = tmp_path / "bad_key"
    bad.write_text("1024\nzz\n.\n")
    result = CliRunner().invoke(main, ["package", "sign", "--key", str(bad), "--apps", str(apps)])
    assert result.exit_code == 1 and "not hexadecimal" in result.output


@pytest.fixture(scope="module")
def crypt_prog(boinc_server_build):
    return boinc_server_build / "lib" / "crypt_prog"


@pytest.mark.boinc_server
def test_boincs_crypt_prog_verifies_the_signatures_and_signs_the_same_bytes(signed, crypt_prog):
    keys, apps = signed
    for path in app_files(apps):
        checked = subprocess.run([crypt_prog, "-verify", path, f"{path}.sig", keys / "code_sign_public"], capture_output=True, text=True)
        assert (checked.returncode, checked.stdout) == (0, "signature is valid\n"), checked.stderr
        theirs = subprocess.run([crypt_prog, "-sign", path, keys / "code_sign_private"], capture_output=True, text=True, check=True)
        assert theirs.stdout == open(f"{path}.sig").read()  # PKCS#1 v1.5 type 1 is deterministic
    path = app_files(apps)[0]
    with open(path, "a") as handle:
        handle.write("# changed\n")
    checked = subprocess.run([crypt_prog, "-verify", path, f"{path}.sig", keys / "code_sign_public"], capture_output=True, text=True)
    assert (checked.returncode, checked.stdout) == (1, "signature is invalid\n")


# -- plan classes --------------------------------------------------------------------------------


def parsed(classes):
    root = etree.fromstring(plan_classes_xml(classes).encode())
    assert root.tag == "plan_classes"
    return {pc.findtext("name"): {child.tag: child.text for child in pc} for pc in root.iterfind("plan_class")}


def test_cpu_mt_plan_class():
    assert parsed([cpu_mt(max_threads=4, min_ncpus=2)]) == {"mt": {"name": "mt", "min_ncpus": "2", "max_threads": "4",
                                                                    "mem_usage_base_mb": "700", "mem_usage_per_cpu_mb": "50"}}  # fmt: skip


def test_cuda_plan_class_uses_boincs_encodings():
    spec = parsed([cuda()])["cuda"]
    assert spec["gpu_type"] == "nvidia" and spec["cuda"] == "1" and spec["ngpus"] == "1"
    assert spec["min_cuda_version"] == "12060"  # driver CUDA 12.6: major * 1000 + minor * 10
    assert spec["min_nvidia_compcap"] == "705"  # compute capability 7.5: major * 100 + minor
    assert float(spec["min_gpu_ram_mb"]) > 0


def test_amd_plan_class_is_opencl_detection():
    spec = parsed([amd_opencl()])["amd_rocm"]
    assert (spec["gpu_type"], spec["opencl"]) == ("amd", "1") and "cuda" not in spec
    assert spec["min_opencl_version"] == "200"


def test_plan_classes_command(tmp_path):
    out = tmp_path / "plan_class_spec.xml"
    result = CliRunner().invoke(main, ["package", "plan-classes", "--kind", "mt", "--kind", "cuda", "--kind", "amd",
                                       "--max-threads", "3", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    classes = parsed_file(out)
    assert list(classes) == ["mt", "cuda", "amd_rocm"] and classes["mt"]["max_threads"] == "3"


def parsed_file(path):
    return {pc.findtext("name"): {c.tag: c.text for c in pc} for pc in etree.parse(str(path)).getroot().iterfind("plan_class")}


