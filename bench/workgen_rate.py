"""Workunits created per second by ``mlds_workgen`` through BOINC's real ``create_work``.

A real project on 127.0.0.1 (``mlds.boinc_local``: BOINC built from source, private MariaDB), mlds
installed into it. Two measurements in the same run, on the same project:

- baseline: BOINC's own tools alone, for N workunits with one input each: ``stage_file_native
  --copy`` per file, then one ``create_work --stdin`` with N lines, what any work generator must at
  least pay;
- mlds: one ``mlds_workgen --one_pass`` pass that creates N first workunits (specs made and
  written, inputs staged, create_work called, the database read before and after).

Prints both rates and their ratio (last line ``ratio: <mlds / baseline>``).

    python bench/workgen_rate.py [--count 200]
"""

import argparse
import os
import sys
import time

from mlds.boinc_local.apps import add_app
from mlds.boinc_local.build import build_boinc_server
from mlds.boinc_local.mariadb import start_mariadb
from mlds.boinc_local.project import ProjectOptions, create_project
from mlds.boinc_local.service_user import make_service_user, remove_runtime

TINY_IN = "<input_template>\n<file_info></file_info>\n<workunit><file_ref><open_name>in</open_name></file_ref></workunit>\n</input_template>\n"


def baseline(project, count):
    project.write_file("templates/tiny_in", TINY_IN)
    source = project.root / "bench-inputs"
    project.service_user.make_dir(source)
    names = []
    for i in range(count):
        path = project.write_file(f"bench-inputs/tiny-{i:05d}", f"input {i}\n")
        names.append(path.name)
    started = time.perf_counter()
    for name in names:
        project.run_bin("stage_file_native", "--copy", source / name)
    lines = [f"--wu_name tiny_{name} --wu_template templates/tiny_in {name}" for name in names]
    project.run_bin("create_work", "--appname", "tiny", "--result_template", "templates/mlds_trainer_out", "--stdin",
                    input="".join(line + "\n" for line in lines))  # fmt: skip
    return time.perf_counter() - started


def mlds_pass(project, count):
    argv = [project.bin_dir / "mlds_workgen", "--app", "mlds_trainer", "--dataset", "DS1", "--networks", str(count * 8),
            "--networks-per-workunit", "8", "--low-water", str(count), "--high-water", str(count), "--one_pass"]  # fmt: skip
    project.service_user.make_dir(project.tmp_dir)
    started = time.perf_counter()
    project.as_service_user(argv, cwd=project.tmp_dir)
    return time.perf_counter() - started


def created(project, prefix):
    connection = project.connect()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM workunit WHERE name LIKE %s", (prefix + "%",))
        return cursor.fetchone()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    count = parser.parse_args().count
    user = make_service_user()
    database = start_mariadb(user.runtime / "mariadb", user)
    project = None
    try:
        project = create_project(build_boinc_server(), database.params.with_database("mldsbench"), user, ProjectOptions(name="mldsbench"))
        project.as_service_user([sys.executable, "-m", "mlds.cli", "server", "install", str(project.root)])
        project.run_bin("xadd")
        add_app(project, "tiny")  # its own app: its workunits must not fill mlds_trainer's cushion
        raw = baseline(project, count)
        ours = mlds_pass(project, count)
        made = created(project, "tiny_"), created(project, "DS1-")
        assert made == (count, count), f"created {made}, expected {count} each"
        print(f"baseline (stage_file_native + create_work --stdin): {count} workunits in {raw:.2f} s, {count / raw:.1f}/s")
        print(f"mlds_workgen --one_pass: {count} workunits in {ours:.2f} s (Python start included), {count / ours:.1f}/s")
        print(f"cpus: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}")
        print(f"ratio: {(count / ours) / (count / raw):.2f}")
    finally:
        if project:
            project.close(drop_db=True)
        database.stop()
        remove_runtime(user)


if __name__ == "__main__":
    main()
