"""The ``mlds`` command: thin click subcommands over the packages that own the work.

Exit codes are mapped here and in ``boinc_app.main`` (the trainer) only.
"""

import os
import sys

import click

from boinc_app.main import config_from_options, train_standalone, trainer_options
from boinc_app.workunit_spec import write_spec
from mlds.analysis.cli import analyze
from mlds.package.cli import package


@click.group()
@click.version_option(package_name="mlds")
def main():
    """MLDS: train thousands of small networks and publish them as datasets."""


@main.command()
@click.option("--dataset", required=True, type=click.Choice(["DS1", "DS2", "DS3"]))
@click.option("--machine", required=True, help="machine name (DS1/DS2) or automaton index (DS3)")
@click.option("--networks", default=1, show_default=True, help="networks in this workunit")
@click.option("--first-index", default=0, show_default=True, help="index of the first network")
@click.option("--max-epochs", type=int, help="cap on a network's epochs (default: the dataset's)")
@click.option("--epoch-budget", type=int, help="epochs this workunit trains (default: the dataset's)")
@click.option("--seed", default=1, show_default=True, help="seed base: network i's seeds are hashed from it, the task and i (spec §4a)")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def spec(dataset, machine, networks, first_index, max_epochs, epoch_budget, seed, output):
    """Write one workunit spec."""
    from workgen.specs import make_spec

    try:
        made = make_spec(dataset, machine, networks, first_index, seed, max_epochs, epoch_budget)
    except KeyError as exc:
        raise click.BadParameter(exc.args[0], param_hint="--machine") from None
    write_spec(made, output)
    click.echo(f"{output}: workunit {made.name}")


@main.command()
@trainer_options
def train(**options):
    """Train the networks of one workunit SPEC standalone and write the result file."""
    sys.exit(train_standalone(config_from_options(**options)))


@main.command()
@click.argument("spec", type=click.Path())  # not dir_okay=False: click's exit 2 would break the 0/1/3 contract
@click.argument("result", type=click.Path())
@click.option("--resume", "resume_path", type=click.Path(), help="a follow-up's previous result (the spot check continues from it)")
@click.option("--no-limits", is_flag=True, help="skip the memory and CPU limits (validator.limits): for debugging in one process")
def validate(spec, result, resume_path, no_limits):
    """Check RESULT against SPEC: exit 0 valid, 1 invalid (reason on stderr), 3 transient."""
    from validator.checks import EXIT_CODES, validate_files

    outcome = validate_files(spec, result, bound_resources=not no_limits, resume_path=resume_path)
    if outcome.reason:
        click.echo(f"{outcome.verdict}: {outcome.reason}", err=True)
    else:
        click.echo(f"valid: {outcome.summary}", err=True)
    sys.exit(EXIT_CODES[outcome.verdict])


@main.command()
@click.option("--dataset", "datasets", multiple=True, type=click.Choice(["DS1", "DS2", "DS3"]), help="repeatable [default: DS1]")
@click.option("--machine", "tasks", multiple=True, help="only these machines / automaton-NNN (repeatable) [default: all; DS3: automaton-000, -001]")
@click.option("--networks", type=int, help="networks per machine (task) [default: 8; DS3: 4]")
@click.option("--networks-per-workunit", type=int, help="[default: the dataset's, 32 for DS1/DS2, 8 for DS3]")
@click.option("--workers", default=0, help="trainer processes at once [default: one per core]")
@click.option("--max-epochs", type=int, help="epoch cap per network [default: 30; DS3: 100]")
@click.option("--epoch-budget", type=int, help="epochs per workunit before a follow-up [default: 10; DS3: 50]")
@click.option("--seed", default=1, show_default=True)
@click.option("--root", default="mlds-data", show_default=True, type=click.Path(file_okay=False), help="where work, store and releases go")
def run(datasets, tasks, networks, networks_per_workunit, workers, max_epochs, epoch_budget, seed, root):
    """Build a dataset end to end on this machine: workunits, trainer processes, validation,
    assimilation, follow-ups, releases. Ctrl-C stops; the same command continues."""
    from mlds.engine import Engine, RunConfig, Stopped
    from mlds.run_report import ProgressDisplay, summary_rows, summary_text, write_run_stats
    from mlds.run_state import RunStateError

    config = RunConfig(
        root, tuple(datasets) or ("DS1",), networks, networks_per_workunit, workers, max_epochs, epoch_budget, seed,
        tasks=tuple(tasks) or None,
    )  # fmt: skip
    engine = Engine(config)
    try:
        engine.create_work()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--machine") from None
    stored = sum(row.count for row in summary_rows(config))
    display = ProgressDisplay(total=sum(len(p.task_names()) * p.count for p in config.plans()), already_stored=stored)
    engine.on_event = display
    try:
        stats = engine.run()
    except (Stopped, KeyboardInterrupt):
        display.close()
        click.echo("stopped; trainers checkpointed. Run the same command to continue.", err=True)
        sys.exit(130)
    except RunStateError as exc:
        display.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    display.close()
    write_run_stats(config, stats)
    click.echo(summary_text(config, stats, summary_rows(config), engine.releases, engine.pending()))
    sys.exit(1 if stats.errors else 0)


@main.group()
def state():
    """Move a stopped `mlds run` to another machine: pack its root into one archive, unpack it there."""


def _run_state_call(function, *args):
    """``function(*args)``; a ``RunStateError`` becomes ``error: ...`` and exit 1."""
    from mlds.run_state import RunStateError

    try:
        return function(*args)
    except RunStateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@state.command("pack")
@click.option("--root", default="mlds-data", show_default=True, type=click.Path(file_okay=False), help="the stopped run's directory")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="archive to write (.tar.gz)")
def state_pack(root, output):
    """Write the stopped run under ROOT to one archive (the store, unfinished workunits, slot checkpoints)."""
    from mlds.run_state import pack

    manifest = _run_state_call(pack, root, output)
    click.echo(f"{output}: {manifest['workunits']} workunits ({manifest['assimilated']} assimilated), "
               f"{manifest['files']} files, {manifest['bytes'] / 1e6:.1f} MB before compression")  # fmt: skip


@state.command("unpack")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--root", default="mlds-data", show_default=True, type=click.Path(file_okay=False), help="an empty directory to continue the run in")
def state_unpack(archive, root):
    """Extract a packed run into ROOT; then run the same `mlds run` command with --root ROOT to continue."""
    from mlds.run_state import unpack

    manifest = _run_state_call(unpack, archive, root)
    click.echo(f"{root}: {manifest['workunits']} workunits ({manifest['assimilated']} assimilated); "
               f"continue with the same mlds run command and --root {root}")  # fmt: skip


@main.command()
@click.option("--root", default="mlds-data", show_default=True, type=click.Path(file_okay=False), help="the engine's directory")
@click.option("--html", type=click.Path(dir_okay=False), help="status page to write (default: ROOT/status.html)")
def status(root, html):
    """Print the progress table per dataset and machine and write the HTML status page."""
    import os

    from assimilator.progress import dataset_progress, format_table, stored_datasets
    from assimilator.status_page import write_status_page

    store_root = os.path.join(root, "store")
    datasets = stored_datasets(store_root)
    if not datasets:
        click.echo(f"error: no dataset store under {store_root}; run `mlds run --root {root}` first", err=True)
        sys.exit(1)
    rows = [row for dataset in datasets for row in dataset_progress(store_root, dataset)]
    click.echo(format_table(rows))
    page = html or os.path.join(root, "status.html")
    write_status_page(page, rows)
    click.echo(f"status page: {page}")


@main.command()
@click.option("--store", required=True, type=click.Path(file_okay=False), help="the dataset store directory")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="also check each result against this spec")
@click.option("--error", "error_mask", type=int, help="script_assimilator's failed-workunit form: --error MASK WU_NAME WU_ID BATCH_ID")
@click.argument("arguments", nargs=-1)
def assimilate(store, spec_path, error_mask, arguments):
    """Store the finished networks of valid results: ARGUMENTS are script_assimilator's ``wu_id files``
    tokens (WU_ID RESULT...) or result paths. Exit 0: stored, already stored or a failed workunit
    logged; 1: not stored (reason on stderr; script_assimilator then stops)."""
    from assimilator.script import EXIT_NOT_STORED, AssimilateError, failed_workunit_message, ingest_file, split_arguments

    if error_mask is not None:
        click.echo(failed_workunit_message(error_mask, *(list(arguments) + ["?"] * 3)[:3]), err=True)
        sys.exit(0)
    _, paths = split_arguments(arguments)
    if not paths:
        click.echo("error: no result files given", err=True)
        sys.exit(EXIT_NOT_STORED)
    for path in paths:
        try:
            click.echo(ingest_file(store, path, spec_path).describe(), err=True)
        except AssimilateError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_NOT_STORED)


def _daemon_options(function):
    """BOINC's daemon options (mlds.server.daemon), spelled as BOINC spells them."""
    function = click.option("-d", "debug_level", default=3, show_default=True, type=click.IntRange(1, 4), help="log level: 1 critical .. 4 debug")(function)
    function = click.option("--one_pass", is_flag=True, help="one pass, then exit")(function)
    function = click.option("--dry_run", is_flag=True, help="say what would be created, create nothing")(function)
    function = click.option("--mod", nargs=2, type=int, default=None, help="N I: handle only share I of N")(function)
    function = click.option("--sleep_interval", default=5.0, show_default=True, help="seconds between passes")(function)
    return function


_server_project = click.option("--project", required=True, type=click.Path(file_okay=False, exists=True), help="the BOINC project directory")
_dataset_choice = click.Choice(["DS1", "DS2", "DS3"])


@main.command()
@_server_project
@click.option("--app", default="mlds_trainer", show_default=True)
@click.option("--dataset", "datasets", multiple=True, type=_dataset_choice, help="repeatable [default: DS1]")
@click.option("--machine", "tasks", multiple=True, help="only these machines / automaton-NNN (repeatable)")
@click.option("--networks", type=int, help="networks per task [default: the dataset's largest milestone]")
@click.option("--networks-per-workunit", type=int)
@click.option("--max-epochs", type=int)
@click.option("--epoch-budget", type=int)
@click.option("--seed", default=1, show_default=True)
@click.option("--low-water", default=20, show_default=True, help="create work when fewer results than this are unsent")
@click.option("--high-water", default=40, show_default=True, help="... up to this many")
@click.option("--max-reissues", default=3, show_default=True)
@_daemon_options
def workgen(project, app, datasets, tasks, networks, networks_per_workunit, max_epochs, epoch_budget, seed,
            low_water, high_water, max_reissues, debug_level, one_pass, dry_run, mod, sleep_interval):  # fmt: skip
    """The work generator daemon of a real BOINC project (bin/mlds_workgen; BOINC's daemon options)."""
    from mlds.server.daemon import DaemonLog, DaemonOptions, StopSignal
    from mlds.server.project_config import ProjectConfigError, load_project_config
    from workgen.generator import GeneratorConfig, run_daemon

    log = DaemonLog(debug_level)
    try:
        daemon = DaemonOptions(debug_level, one_pass, dry_run, tuple(mod) if mod else None, sleep_interval)
        config = GeneratorConfig(project, app, tuple(datasets) or ("DS1",), networks, networks_per_workunit, max_epochs,
                                 epoch_budget, seed, tuple(tasks) or None, low_water, high_water, max_reissues, daemon)  # fmt: skip
        project_config = load_project_config(project)
    except (ValueError, ProjectConfigError) as exc:
        log.critical(str(exc))
        sys.exit(1)
    try:
        run_daemon(project_config, config, log, StopSignal(project_config.stop_file).install())
    except Exception as exc:  # noqa: BLE001 - a daemon logs why it stops, as BOINC's do
        log.critical(f"{type(exc).__name__}: {exc}")
        sys.exit(1)


@main.group()
def server():
    """mlds inside a real BOINC project: install, and the programs BOINC's daemons run."""


@server.command("install")
@click.argument("project", type=click.Path(file_okay=False, exists=True))
@click.option("--app", default="mlds_trainer", show_default=True)
@click.option("--dataset", "datasets", multiple=True, type=_dataset_choice, help="repeatable [default: DS1]")
@click.option("--workgen-args", default="", help="extra options for the mlds_workgen daemon line, e.g. '--networks 100'")
@click.option("--publish-args", default="", help="extra options for the mlds_publish task line")
@click.option("--no-tokens", is_flag=True, help="script names without tokens (a BOINC with the split() token bug)")
@click.option("--merge-config", is_flag=True, help="merge the daemon and task lines into config.xml")
@click.option("--force", is_flag=True, help="overwrite files and lines an admin edited")
def server_install(project, app, datasets, workgen_args, publish_args, no_tokens, merge_config, force):
    """Install mlds into the BOINC project PROJECT (templates, bin/, project.xml, config.xml lines)."""
    import shlex

    from mlds.server.install import InstallConfig, InstallError, install

    config = InstallConfig(project, app, tuple(datasets) or ("DS1",), tuple(shlex.split(workgen_args)),
                           tuple(shlex.split(publish_args)), sys.executable, not no_tokens, merge_config, force)  # fmt: skip
    try:
        click.echo(install(config).describe())
    except (InstallError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@server.command("validate")
@_server_project
@click.argument("arguments", nargs=-1)
def server_validate(project, arguments):
    """script_validator's init script (bin/mlds_validate files result_id runtime): 0 valid, 1 invalid, 3 transient."""
    from validator.boinc_script import main as validate_main

    sys.exit(validate_main(project, arguments, bound_resources=True))


@server.command("validate-service")
@_server_project
def server_validate_service(project):
    """The validation service bin/mlds_validate asks first (a daemon: imports torch once, forks per result)."""
    from mlds.server.daemon import DaemonLog, StopSignal
    from mlds.server.project_config import load_project_config
    from mlds.server.validation_service import serve

    config = load_project_config(project)
    serve(config, DaemonLog(), StopSignal(config.stop_file).install())


@server.command("assimilate")
@_server_project
@click.option("--error", "error_mask", type=int, help="script_assimilator's failed-workunit form: --error MASK WU_NAME WU_ID BATCH")
@click.argument("arguments", nargs=-1)
def server_assimilate(project, error_mask, arguments):
    """script_assimilator's script (bin/mlds_assimilate wu_id files): always 0 unless BOINC passed nothing."""
    from assimilator.boinc_script import main as assimilate_main

    sys.exit(assimilate_main(project, arguments, error_mask))


@server.command("publish")
@_server_project
@click.option("--dataset", "datasets", multiple=True, type=_dataset_choice, help="repeatable [default: DS1]")
@click.option("--machine", "tasks", multiple=True, help="only these machines count for a milestone")
@click.option("--networks", type=int, help="the target per task (a milestone too)")
def server_publish(project, datasets, tasks, networks):
    """Consolidate the store, build the milestone releases reached, write the status page."""
    from mlds.server.daemon import DaemonLog
    from mlds.server.publish import PublishConfig, publish

    log = DaemonLog()
    try:
        releases, removed = publish(PublishConfig(project, tuple(datasets) or ("DS1",), networks, tuple(tasks) or None))
    except Exception as exc:  # noqa: BLE001 - a cron task logs why it failed and is run again
        log.critical(f"mlds_publish: {type(exc).__name__}: {exc}")
        sys.exit(1)
    for path in removed:
        log.normal(f"mlds_publish: removed stale temporary {path}")
    log.normal(f"mlds_publish: {len(releases)} release(s): {', '.join(os.path.basename(r) for r in releases) or 'none yet'}")


def _test_server_call(function, *args, **kwargs):
    """Run a test-server function; its errors (and a busy port) become ``error: ...`` and exit 1."""
    from mlds.test_server.errors import ServerError

    try:
        return function(*args, **kwargs)
    except (ServerError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


_project_option = click.option("--project", required=True, type=click.Path(file_okay=False), help="the test project directory")


@main.group("test-server")
def test_server():
    """A BOINC test project server on 127.0.0.1, enough for a real 7.20 client (README: Test project server)."""
    try:
        import cryptography  # noqa: F401 - code signing; the test server's only dependency of its own
    except ImportError:
        click.echo("error: the test project server needs its extra: pip install 'mlds[test-server]'", err=True)
        sys.exit(1)


@test_server.command("init")
@_project_option
@click.option("--app", default="mlds_trainer", show_default=True, help="app the validator and assimilator daemons serve")
@click.option("--store", type=click.Path(file_okay=False), help="dataset store the assimilator writes [default: PROJECT/store]")
def test_server_init(project, app, store):
    """Create a project: code-signing keys, download/upload hierarchy, templates, daemon scripts, database."""
    from mlds.test_server.project import init_project

    config = _test_server_call(init_project, project, app=app, store=store)
    click.echo(f"{config.root}: test project created; account key {config.authenticator}")


@test_server.command("launcher")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="where to write the script")
def test_server_launcher(output):
    """Write a main program that runs this environment's trainer (``python -m boinc_app.main spec.json -o result.h5``)."""
    from mlds.test_server.project import write_launcher

    click.echo(_test_server_call(write_launcher, output))


@test_server.command("sign")
@click.option("--key", "private_key", required=True, type=click.Path(dir_okay=False), help="code_sign_private (BOINC format)")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def test_server_sign(private_key, files):
    """Sign FILES offline (BOINC's sign_executable): write FILE.sig next to each."""
    from mlds.test_server.apps import sign_files

    for path in _test_server_call(sign_files, private_key, files):
        click.echo(path)


@test_server.command("add-app")
@_project_option
@click.option("--app", required=True, help="app name, e.g. mlds_trainer")
@click.option("--version", "version_num", required=True, type=int, help="version number, e.g. 100 for 1.00")
@click.option("--platform", required=True, help="BOINC platform, e.g. x86_64-pc-linux-gnu")
@click.option("--plan-class", default="", help="plan class (the test scheduler sends only versions without one)")
@click.option("--api-version", default="7.20.0", show_default=True)
@click.option("--avg-ncpus", default=1.0, show_default=True)
@click.option("--cmdline", default="", help="arguments appended to the main program's command line")
@click.option("--main", "main_name", help="file name of the main program [default: the first file]")
@click.option("--logical-name", "logical_names", multiple=True, metavar="FILE=NAME", help="the name FILE has in the slot (version.xml's logical_name)")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def test_server_add_app(project, app, version_num, platform, plan_class, api_version, avg_ncpus, cmdline, main_name, logical_names, files):
    """Add an app version: sign FILES (or use FILE.sig) and put them in the download hierarchy."""
    import os

    from mlds.test_server.apps import AppVersionSpec, add_app_version
    from mlds.test_server.project import load_project

    names = [os.path.basename(f) for f in files]
    if main_name is not None and main_name not in names:
        raise click.BadParameter(f"{main_name} is not one of the files", param_hint="--main")
    main_index = names.index(main_name) if main_name else 0
    if any("=" not in pair for pair in logical_names):
        raise click.BadParameter("give FILE=NAME", param_hint="--logical-name")
    logical = tuple(tuple(pair.split("=", 1)) for pair in logical_names)
    spec = AppVersionSpec(app, version_num, platform, tuple(files), main_index, plan_class, api_version, avg_ncpus, cmdline,
                          logical_names=logical)  # fmt: skip
    _test_server_call(lambda: add_app_version(load_project(project), spec))
    click.echo(f"{app} {version_num} {platform}{'__' + plan_class if plan_class else ''}: {len(files)} file(s) signed and placed")


@test_server.command("stage-file")
@_project_option
@click.option("--copy", is_flag=True, help="copy instead of moving (as bin/stage_file --copy)")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def test_server_stage_file(project, copy, files):
    """Put input FILES into the download hierarchy (bin/stage_file); prints their physical names."""
    from mlds.test_server.project import load_project, stage_file

    config = _test_server_call(load_project, project)
    for path in files:
        click.echo(_test_server_call(stage_file, config, path, copy=copy))


@test_server.command("create-work", context_settings={"ignore_unknown_options": True})
@_project_option
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def test_server_create_work(project, arguments):
    """Create workunits with BOINC create_work's ARGUMENTS (--appname, --wu_name, --wu_template,
    --result_template, ..., input files) and its --stdin format (one job per line)."""
    from mlds.test_server.create_work import create_jobs, jobs_from
    from mlds.test_server.project import load_project

    config = _test_server_call(load_project, project)
    jobs = _test_server_call(jobs_from, arguments, sys.stdin)
    for name in _test_server_call(create_jobs, config, jobs):
        click.echo(f"created workunit {name}")


@test_server.command("serve")
@_project_option
@click.option("--port", default=31480, show_default=True, help="port on 127.0.0.1")
@click.option("--max-jobs", default=4, show_default=True, help="results per scheduler reply at most")
def test_server_serve(project, port, max_jobs):
    """Serve the project on http://127.0.0.1:PORT/ (master page, scheduler, downloads, uploads) and run
    its validator and assimilator until Ctrl-C."""
    from mlds.test_server.server import ServeConfig, configure_logging, serve

    def ready(server):
        click.echo(f"serving {server.project.root} at {server.urls.master}")
        click.echo(f"attach a client: boinccmd --project_attach {server.urls.master} {server.project.authenticator}")

    configure_logging()
    _test_server_call(serve, ServeConfig(project, port, max_jobs=max_jobs), ready=ready)


@test_server.command("status")
@_project_option
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def test_server_status(project, as_json):
    """Workunits and their results: sent, reported, validated, assimilated."""
    import json

    from mlds.test_server.project import load_project
    from mlds.test_server.queries import format_summaries, workunit_summaries

    summaries = _test_server_call(lambda: workunit_summaries(load_project(project)))
    click.echo(json.dumps(summaries, indent=1) if as_json else format_summaries(summaries))


@test_server.command("input-path")
@_project_option
@click.option("--result-id", required=True, type=int)
@click.option("--position", default=0, show_default=True, help="which input file of the workunit")
def test_server_input_path(project, result_id, position):
    """Print the path of an input file of a result's workunit (the validator script's spec lookup)."""
    from mlds.test_server.project import load_project
    from mlds.test_server.queries import input_path

    click.echo(_test_server_call(lambda: input_path(load_project(project), result_id, position)))


main.add_command(package)
main.add_command(analyze)

if __name__ == "__main__":
    main()
