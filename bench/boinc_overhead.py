"""What running under a real BOINC client costs: round trip of one workunit, and the protocol thread.

Runs one DS1 workunit (one SingleDirectMachine network) through a private Debian ``boinc-client``
and the test project server, with the harness of ``tests/test_boinc_client_e2e.py``, and prints

(a) the round trip: seconds from attach to sent, reported, validated and assimilated, and the
    task's elapsed time as the client reported it;
(b) the CPU time of the app's protocol timer thread (``boinc_app.boinc_control``: wakes every
    0.1 s, sends a status once a second) against the whole app process, sampled from
    ``/proc/<pid>/task/<tid>/sched`` (or ``stat``) every 0.2 s until the app exits. CPython 3.11 gives threads no
    OS names, so the timer thread is found by elimination: not the main thread (tid == pid), and
    of the others the one with the most voluntary context switches (it sleeps ten times a second);
    every thread is listed (with its last sample: the timer thread ends a moment before the
    process) so the choice can be checked;
(c) the same spec trained standalone (no client, no timer thread), its CPU time from ``wait4``,
    next to the app's CPU time under the client. On a busy machine this difference is noise-level;
    (b) is the direct measure.

    python bench/boinc_overhead.py                 # the 6-epoch spec of the tests (about 3 epochs)
    python bench/boinc_overhead.py --epochs 2 --keep /tmp/overhead
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_boinc_client_e2e import BOINC, BOINCCMD, Harness, app_processes  # noqa: E402

SAMPLE_SECONDS = 0.2
TICK = os.sysconf("SC_CLK_TCK")


def thread_samples(pid):
    """``{tid: (cpu seconds, voluntary switches, involuntary switches)}`` of a live process. CPU time
    from ``sched``'s ``se.sum_exec_runtime`` (nanosecond clock, kernels with CONFIG_SCHED_DEBUG),
    else utime + stime from ``stat`` (clock ticks)."""
    samples = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return samples
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as handle:
                status = dict(line.split(":\t", 1) for line in handle.read().splitlines() if ":\t" in line)
        except OSError:  # the thread just ended
            continue
        cpu = sched_runtime(pid, tid)
        if cpu is None:
            cpu = (int(fields[11]) + int(fields[12])) / TICK
        samples[int(tid)] = (cpu, int(status["voluntary_ctxt_switches"]), int(status["nonvoluntary_ctxt_switches"]))
    return samples


def sched_runtime(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/sched") as handle:
            for line in handle:
                if line.startswith("se.sum_exec_runtime"):
                    return float(line.split(":")[1]) / 1000.0  # milliseconds
    except (OSError, ValueError):
        pass
    return None


def process_cpu(pid):
    """utime + stime of the whole process (threads that ended included)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def run_under_client(tmp, epochs):
    """One workunit through client and server; returns the round trip and the app's last /proc samples."""
    harness = Harness(tmp)
    try:
        harness.init_project()
        harness.add_workunit("overhead", max_epochs=epochs)
        harness.start_server()
        harness.start_client()
        harness.attach()
        pid, threads, total, started, ended = None, {}, None, None, None
        while harness.result()[1]["server_state"] != "over":
            if pid is None:
                pids = [p for slot in harness.client_dir.glob("slots/*") for p in app_processes(slot)]
                if pids:
                    (pid,) = pids
                    started = time.monotonic()
            if pid is not None:
                sample, cpu = thread_samples(pid), process_cpu(pid)
                if sample and cpu is not None:  # threads that end keep their last sample
                    threads.update(sample)
                    total, ended = cpu, time.monotonic()
            if time.monotonic() - harness.marks["attach"] > 900:
                raise SystemExit(f"no report after 15 min\n{harness.diagnostics()}")
            time.sleep(SAMPLE_SECONDS)
        harness.mark("reported")
        assimilated = lambda: harness.result()[0]["assimilate_state"] == "done" or harness.result()[0]["assimilate_error"]  # noqa: E731
        harness.wait_for(assimilated, 300, "validation and assimilation")
        harness.mark("assimilated")
        wu, result = harness.result()
        if result["outcome"] != "success" or wu["assimilate_state"] != "done":
            raise SystemExit(f"the workunit failed\n{harness.diagnostics()}")
        connection = harness.config.connect()
        try:
            sent, received, cpu_time = connection.execute(
                "SELECT sent_time, received_time, cpu_time FROM result WHERE id = ?", (result["id"],)
            ).fetchone()
        finally:
            connection.close()
        attach = harness.marks["attach"]
        round_trip = {
            "reported": round(harness.marks["reported"] - attach, 1),
            "assimilated": round(harness.marks["assimilated"] - attach, 1),
            "server sent->received": round(received - sent, 1),
            "task elapsed (client)": round(result["elapsed_time"], 1),
            "task CPU (client)": round(cpu_time, 1),
        }
        app = {"pid": pid, "threads": threads, "process_cpu": total, "sampled_seconds": ended - started}
        return round_trip, app, harness.spec(epochs)
    finally:
        harness.stop()


def run_standalone(spec, tmp):
    """The same spec with ``python -m boinc_app.main`` (no client); returns CPU seconds and wall seconds."""
    directory = tmp / "standalone"
    directory.mkdir()
    shutil.copy(spec, directory / "spec.json")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "boinc_app.main", "spec.json", "-o", "result.h5"],
        cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"standalone run exited {process.returncode}")
    return usage.ru_utime + usage.ru_stime, time.monotonic() - started


@click.command()
@click.option("--epochs", default=6, show_default=True, help="the spec's max_epochs (DS1 SingleDirectMachine converges in ~3)")
@click.option("--keep", type=click.Path(file_okay=False), help="work here and keep the logs (default: a temporary directory)")
@click.option("--json-out", type=click.Path(dir_okay=False), help="also write the numbers as JSON")
def main(epochs, keep, json_out):
    if not (BOINC and BOINCCMD):
        raise SystemExit("needs Debian's boinc-client (boinc, boinccmd)")
    tmp = Path(keep or tempfile.mkdtemp(prefix="boinc_overhead_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        round_trip, app, spec = run_under_client(tmp, epochs)
        standalone_cpu, standalone_wall = run_standalone(spec, tmp)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    pid, threads = app["pid"], app["threads"]
    others = {tid: s for tid, s in threads.items() if tid != pid}
    timer = max(others, key=lambda tid: others[tid][1]) if others else None
    timer_cpu = threads[timer][0] if timer else float("nan")
    print(f"(a) round trip of one DS1 workunit, seconds after attach: {round_trip}")
    print(f"(b) app process {pid}: {app['process_cpu']:.2f} s CPU over {app['sampled_seconds']:.1f} s sampled; threads (last sample of each):")
    for tid, (cpu, voluntary, involuntary) in sorted(threads.items()):
        role = "main" if tid == pid else ("timer (by elimination)" if tid == timer else "")
        print(f"    tid {tid:>7}  cpu {cpu:8.3f} s  voluntary switches {voluntary:6d}  involuntary {involuntary:6d}  {role}")
    share = timer_cpu / app["process_cpu"] if app["process_cpu"] else float("nan")
    print(f"    timer thread: {timer_cpu:.3f} s CPU = {100 * share:.2f} % of the process "
          f"({1000 * timer_cpu / max(app['sampled_seconds'], 1e-9):.2f} ms CPU per second of run)")  # fmt: skip
    print(f"(c) the same spec standalone: {standalone_cpu:.2f} s CPU, {standalone_wall:.1f} s wall; "
          f"under the client: {app['process_cpu']:.2f} s CPU (/proc), {round_trip['task CPU (client)']:.2f} s (client's report)")  # fmt: skip
    if json_out:
        numbers = {
            "round_trip": round_trip,
            "app_process_cpu": app["process_cpu"],
            "timer_thread_cpu": timer_cpu,
            "timer_share": share,
            "threads": {str(tid): s for tid, s in threads.items()},
            "standalone_cpu": standalone_cpu,
            "standalone_wall": standalone_wall,
        }
        Path(json_out).write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
