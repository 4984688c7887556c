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


if __name__ == "__main__":
    main()
