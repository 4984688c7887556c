"""init_data.xml as the 7.20.5 client writes it, logical file names, and the slot's signal files."""

import os
import subprocess
import sys

import pytest

from boinc_app.boinc_errors import BoincAppError, InitDataError, TemporaryExit
from boinc_app.boinc_task import select_device
from boinc_app.filenames import resolve, slot_checkpoint_path
from boinc_app.init_data import DEFAULT_CHECKPOINT_PERIOD, InitData, parse_init_data, read_init_data
from boinc_app.slot_files import take_slot_lock, write_finish_file, write_temporary_exit

# The order and formats of lib/app_ipc.cpp ``write_init_data_file`` (client 7.20.5): ints with
# %d, doubles with %f; strings only when non-empty, except gpu_type which is always written.
_HEAD = (("major_version", "%d"), ("minor_version", "%d"), ("release", "%d"), ("app_version", "%d"),
         ("userid", "%d"), ("teamid", "%d"), ("hostid", "%d"))  # fmt: skip
_NAMES = ("app_name", "project_preferences", "team_name", "user_name", "project_dir", "boinc_dir",
          "authenticator", "wu_name", "result_name")  # fmt: skip
_TAIL = (
    ("shm_key", "%d"), ("slot", "%d"), ("client_pid", "%d"), ("wu_cpu_time", "%f"),
    ("starting_elapsed_time", "%f"), ("using_sandbox", "%d"), ("vm_extensions_disabled", "%d"),
    ("user_total_credit", "%f"), ("user_expavg_credit", "%f"), ("host_total_credit", "%f"),
    ("host_expavg_credit", "%f"), ("resource_share_fraction", "%f"), ("checkpoint_period", "%f"),
    ("fraction_done_start", "%f"), ("fraction_done_end", "%f"), ("gpu_type", "%s"),
    ("gpu_device_num", "%d"), ("gpu_opencl_dev_index", "%d"), ("gpu_usage", "%f"), ("ncpus", "%f"),
    ("rsc_fpops_est", "%f"), ("rsc_fpops_bound", "%f"), ("rsc_memory_bound", "%f"),
    ("rsc_disk_bound", "%f"), ("computation_deadline", "%f"), ("vbox_window", "%d"),
    ("no_priority_change", "%d"), ("process_priority", "%d"), ("process_priority_special", "%d"),
)  # fmt: skip
CLIENT_DEFAULTS = {
    "major_version": 7, "minor_version": 20, "release": 5, "app_version": 100, "userid": 1, "teamid": 0,
    "hostid": 1, "app_name": "mlds", "project_preferences": "<color>blue</color>\n", "user_name": "volunteer &amp; co",
    "project_dir": "/var/lib/boinc/projects/127.0.0.1_39341", "boinc_dir": "/var/lib/boinc",
    "authenticator": "0123abcd", "wu_name": "DS1-wu", "result_name": "DS1-wu_0", "shm_key": -1, "slot": 0,
    "client_pid": 0, "wu_cpu_time": 0.0, "starting_elapsed_time": 0.0, "using_sandbox": 0,
    "vm_extensions_disabled": 0, "user_total_credit": 0.0, "user_expavg_credit": 0.0, "host_total_credit": 0.0,
    "host_expavg_credit": 0.0, "resource_share_fraction": 1.0, "checkpoint_period": 60.0,
    "fraction_done_start": 0.0, "fraction_done_end": 1.0, "gpu_type": "", "gpu_device_num": -1,
    "gpu_opencl_dev_index": -1, "gpu_usage": 0.0, "ncpus": 1.0, "rsc_fpops_est": 1e12, "rsc_fpops_bound": 1e13,
    "rsc_memory_bound": 5e8, "rsc_disk_bound": 1e9, "computation_deadline": 1.9e9, "vbox_window": 0,
    "no_priority_change": 0, "process_priority": 0, "process_priority_special": 0,
}  # fmt: skip
_BLOCKS = (
    "<host_info>\n    <p_ncpus>2</p_ncpus>\n    <coprocs>\n    </coprocs>\n</host_info>\n"
    "<proxy_info>\n    <socks_server_name></socks_server_name>\n</proxy_info>\n"
    "<global_preferences>\n   <disk_interval>60.000000</disk_interval>\n</global_preferences>\n"
    "<app_file>mlds-train_1.00_x86_64-pc-linux-gnu</app_file>\n"
)


def client_init_data_xml(**fields):
    """init_data.xml text in the 7.20.5 client's layout, with ``fields`` overriding defaults."""
    values = {**CLIENT_DEFAULTS, **fields}
    lines = ["<app_init_data>"]
    lines += [f"<{name}>{fmt % values[name]}</{name}>" for name, fmt in _HEAD]
    for name in _NAMES:
        if values.get(name):
            text = values[name]
            lines.append(f"<{name}>\n{text}</{name}>" if name == "project_preferences" else f"<{name}>{text}</{name}>")
    lines += [f"<{name}>{fmt % values[name]}</{name}>" for name, fmt in _TAIL]
    return "\n".join(lines) + "\n" + _BLOCKS + "</app_init_data>\n"


def test_client_layout_parses_to_the_fields_the_trainer_uses():
    data = parse_init_data(client_init_data_xml(checkpoint_period=30, ncpus=2.0, wu_cpu_time=12.5).encode())
    assert (data.major_version, data.minor_version, data.release) == (7, 20, 5)
    assert (data.wu_name, data.result_name, data.app_name) == ("DS1-wu", "DS1-wu_0", "mlds")
    assert data.project_dir == "/var/lib/boinc/projects/127.0.0.1_39341"
    assert (data.shm_key, data.slot, data.gpu_type, data.gpu_device_num) == (-1, 0, "", -1)
    assert (data.checkpoint_seconds, data.threads, data.wu_cpu_time) == (30.0, 2, 12.5)
    assert data.rsc_fpops_est == 1e12


def test_defaults_follow_the_api_checkpoint_fallback_fraction_mapping_and_threads():
    data = parse_init_data(b"<app_init_data><checkpoint_period>0.000000</checkpoint_period><ncpus>0.5</ncpus></app_init_data>")
    assert data.checkpoint_seconds == DEFAULT_CHECKPOINT_PERIOD == 300.0
    assert data.threads == 1
    assert (data.fraction_done_start, data.fraction_done_end, data.shm_key) == (0.0, 1.0, None)
    mapped = parse_init_data(client_init_data_xml(fraction_done_start=0.2, fraction_done_end=0.6).encode())
    assert mapped.overall_fraction(0.0) == pytest.approx(0.2)
    assert mapped.overall_fraction(0.5) == pytest.approx(0.4)
    assert mapped.overall_fraction(1.0) == pytest.approx(0.6)


HOSTILE = {
    "entity expansion": (
        b'<?xml version="1.0"?><!DOCTYPE app_init_data [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<app_init_data><wu_name>&b;</wu_name></app_init_data>",
        "DOCTYPE",
    ),
    "external entity": (
        b'<!DOCTYPE app_init_data [<!ENTITY x SYSTEM "file:///etc/passwd">]><app_init_data><wu_name>&x;</wu_name></app_init_data>',
        "DOCTYPE",
    ),
    "not xml": (b"\x00\x01garbage", "not well-formed XML"),
    "truncated": (b"<app_init_data><slot>1</slot>", "not well-formed XML"),
    "wrong root": (b"<scheduler_reply/>", "expected <app_init_data>"),
    "bad number": (b"<app_init_data><checkpoint_period>soon</checkpoint_period></app_init_data>", "<checkpoint_period>"),
    "infinite": (b"<app_init_data><ncpus>inf</ncpus></app_init_data>", "not a finite number"),
    "nested value": (b"<app_init_data><wu_name><b>x</b></wu_name></app_init_data>", "<wu_name> must hold a value"),
    "fraction range": (
        b"<app_init_data><fraction_done_start>0.8</fraction_done_start><fraction_done_end>0.2</fraction_done_end></app_init_data>",
        "fraction_done_start",
    ),
    "negative cpu": (b"<app_init_data><wu_cpu_time>-1</wu_cpu_time></app_init_data>", "<wu_cpu_time> is negative"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_or_broken_init_data_is_refused_naming_the_problem(case):
    payload, expected = HOSTILE[case]
    with pytest.raises(InitDataError, match=expected) as error:
        parse_init_data(payload, source="slots/3/init_data.xml")
    assert "slots/3/init_data.xml" in str(error.value)


def test_missing_or_oversized_file_is_an_init_data_error(tmp_path):
    with pytest.raises(InitDataError, match="cannot read"):
        read_init_data(tmp_path / "init_data.xml")
    big = tmp_path / "big.xml"
    big.write_bytes(b"<app_init_data>" + b" " * (5 * 1024 * 1024) + b"</app_init_data>")
    with pytest.raises(InitDataError, match="more than the limit"):
        read_init_data(big)


@pytest.fixture
def slot(tmp_path):
    """A slot beside a project directory, as the client lays them out."""
    project = tmp_path / "projects" / "127.0.0.1_39341"
    slot = tmp_path / "slots" / "0"
    project.mkdir(parents=True)
    slot.mkdir(parents=True)
    return slot


def test_soft_link_files_resolve_relative_to_the_slot(slot):
    (slot.parent.parent / "projects" / "127.0.0.1_39341" / "wu_spec").write_text("{}")
    (slot / "spec.json").write_text("<soft_link>../../projects/127.0.0.1_39341/wu_spec</soft_link>\n")
    (slot / "result.h5").write_text("<soft_link>../../projects/127.0.0.1_39341/wu_0_r0</soft_link>\n")
    assert resolve("spec.json", str(slot)) == str(slot / "../../projects/127.0.0.1_39341/wu_spec")
    assert os.path.exists(resolve("spec.json", str(slot)))
    output = resolve("result.h5", str(slot))  # an output: the target does not exist yet
    assert output == str(slot / "../../projects/127.0.0.1_39341/wu_0_r0") and not os.path.exists(output)


def test_symlinks_resolve_to_their_target_so_atomic_writes_do_not_replace_the_link(slot):
    os.symlink("../../projects/127.0.0.1_39341/wu_0_r0", slot / "result.h5")
    target = resolve("result.h5", str(slot))
    assert os.path.normpath(target) == str(slot.parent.parent / "projects" / "127.0.0.1_39341" / "wu_0_r0")


def test_plain_or_missing_files_keep_their_name(slot):
    (slot / "spec.json").write_text('{"format": "mlds-workunit-spec"}\n')  # copied in (<copy_file/>)
    assert resolve("spec.json", str(slot)) == str(slot / "spec.json")
    assert resolve("absent.h5", str(slot)) == str(slot / "absent.h5")
    assert resolve("spec.json") == "./spec.json"
    assert slot_checkpoint_path("result.h5", str(slot)) == str(slot / "result.h5.checkpoint")


def test_finish_and_temporary_exit_files_have_the_clients_layout(slot):
    write_finish_file(0, slot=str(slot))
    assert (slot / "boinc_finish_called").read_text() == "0\n"
    write_finish_file(2, message="bad spec", slot=str(slot))
    assert (slot / "boinc_finish_called").read_text() == "2\nbad spec\n\n"
    write_temporary_exit(300, "GPU 3\nmissing", slot=str(slot))
    assert (slot / "boinc_temporary_exit").read_text() == "300\nGPU 3 missing\n"
    write_temporary_exit(10**6, "", notice=True, slot=str(slot))
    assert (slot / "boinc_temporary_exit").read_text() == "86400\ntemporary exit\nnotice\n"


def test_slot_lock_held_by_another_process_is_a_temporary_exit(slot):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,os,sys; fd=os.open('boinc_lockfile', os.O_RDWR|os.O_CREAT);"
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()"],
        cwd=slot, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(TemporaryExit) as error:
            take_slot_lock(str(slot), wait=0.3, poll=0.1)
        assert error.value.delay == 600 and "slot directory lock" in error.value.reason
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    fd = take_slot_lock(str(slot), wait=0)  # free again once the holder is gone
    os.close(fd)


class FakeCuda:
    """What ``select_device`` asks of ``torch.cuda`` (no GPU on the build machines)."""

    def __init__(self, count):
        self.count = count

    def is_available(self):
        return self.count > 0

    def device_count(self):
        return self.count


def test_device_follows_the_gpu_the_client_assigned():
    assert select_device(InitData(), FakeCuda(2)) == "cpu"
    assert select_device(InitData(gpu_type="NVIDIA", gpu_device_num=1), FakeCuda(2)) == "cuda:1"
    assert select_device(InitData(gpu_type="ATI", gpu_device_num=0), FakeCuda(1)) == "cuda:0"  # ROCm torch


@pytest.mark.parametrize("count, expected", [(0, "torch sees no usable GPU"), (1, "torch sees only 1 GPU")])
def test_assigned_gpu_that_torch_cannot_use_is_a_temporary_exit(count, expected):
    with pytest.raises(TemporaryExit, match=expected) as error:
        select_device(InitData(gpu_type="NVIDIA", gpu_device_num=1), FakeCuda(count))
    assert error.value.delay == 300 and "NVIDIA GPU 1" in error.value.reason


def test_gpu_type_torch_cannot_drive_is_a_permanent_error():
    with pytest.raises(BoincAppError, match="intel_gpu") as error:
        select_device(InitData(gpu_type="intel_gpu", gpu_device_num=0), FakeCuda(1))
    assert not isinstance(error.value, TemporaryExit)


def test_the_trainer_imports_no_lxml():
    """The frozen trainer leaves lxml (10 MB) out: the volunteer's app parses with the standard library."""
    import subprocess
    import sys

    code = "import sys, boinc_app.main, boinc_app.boinc_task; print('lxml' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_repeated_field_keeps_its_first_value_and_entities_of_xml_itself_are_read():
    data = parse_init_data(b"<app_init_data><wu_name>a&amp;b</wu_name><wu_name>second</wu_name><!-- c --></app_init_data>")
    assert data.wu_name == "a&b"
