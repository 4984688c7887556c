"""The ``mlds`` command: thin click subcommands over the packages that own the work.

Exit codes are mapped here and in ``boinc_app.main`` (the trainer) only.
"""

import sys

import click

from boinc_app.main import config_from_options, train_standalone, trainer_options
from boinc_app.workunit_spec import write_spec


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
@click.option("--seed", default=1, show_default=True, help="network i gets seed SEED + i")
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
def validate(spec, result):
    """Check RESULT against SPEC: exit 0 valid, 1 invalid (reason on stderr), 3 transient."""
    from validator.checks import EXIT_CODES, validate_files

    outcome = validate_files(spec, result)
    if outcome.reason:
        click.echo(f"{outcome.verdict}: {outcome.reason}", err=True)
    else:
        click.echo(f"valid: {outcome.summary}", err=True)
    sys.exit(EXIT_CODES[outcome.verdict])


@main.command()
@click.option("--dataset", "datasets", multiple=True, type=click.Choice(["DS1", "DS2", "DS3"]), help="repeatable [default: DS1]")
@click.option("--machine", "tasks", multiple=True, help="only these machines / automaton-NNN (repeatable) [default: all]")
@click.option("--networks", default=4, show_default=True, help="networks per machine (task)")
@click.option("--networks-per-workunit", default=4, show_default=True)
@click.option("--workers", default=0, help="trainer processes at once [default: one per core]")
@click.option("--max-epochs", default=30, show_default=True, help="epoch cap per network")
@click.option("--epoch-budget", default=10, show_default=True, help="epochs per workunit before a follow-up")
@click.option("--seed", default=1, show_default=True)
@click.option("--root", default="mlds-data", show_default=True, type=click.Path(file_okay=False), help="where work, store and releases go")
def run(datasets, tasks, networks, networks_per_workunit, workers, max_epochs, epoch_budget, seed, root):
    """Build a dataset end to end on this machine: workunits, trainer processes, validation,
    assimilation, follow-ups, releases. Ctrl-C stops; the same command continues."""
    from mlds.engine import Engine, RunConfig, Stopped
    from mlds.run_report import ProgressDisplay, summary_rows, summary_text, write_run_stats

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
    display = ProgressDisplay(total=sum(len(p.task_names()) * networks for p in config.plans()), already_stored=stored)
    engine.on_event = display
    try:
        stats = engine.run()
    except Stopped:
        display.close()
        click.echo("stopped; trainers checkpointed. Run the same command to continue.", err=True)
        sys.exit(130)
    display.close()
    write_run_stats(config, stats)
    click.echo(summary_text(config, stats, summary_rows(config), engine.releases, engine.pending()))
    sys.exit(1 if stats.errors else 0)


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


if __name__ == "__main__":
    main()
