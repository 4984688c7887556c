"""The trainer's own entry point (what PyInstaller freezes): ``mlds-train SPEC -o RESULT``.

Exit codes: 0 finished (result written), 2 bad input (spec or checkpoint), 75 stopped on request
after a checkpoint (run the same command again to continue), 1 anything else.
"""

import sys

import click

from boinc_app.result_file import ResultFileError
from boinc_app.standalone import StandaloneControl
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.training import CONVERGED, QuitRequested
from boinc_app.workunit_spec import SpecError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 75


def train_standalone(config):
    """Run ``config`` under the standalone control; returns an exit code and prints a summary."""

    def control(write_checkpoint):
        standalone = StandaloneControl(write_checkpoint, checkpoint_period=config.checkpoint_period)
        standalone.install_signal_handlers()
        return standalone

    try:
        state = run_trainer(config, control)
    except (SpecError, ResultFileError) as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_BAD_INPUT
    except QuitRequested:
        click.echo(f"stopped; checkpoint in {config.checkpoint}; run the same command to continue", err=True)
        return EXIT_STOPPED
    converged = sum(1 for n in state.networks if n.status == CONVERGED)
    click.echo(f"{config.output_path}: {converged}/{len(state.networks)} networks converged", err=True)
    return EXIT_OK


def trainer_options(function):
    options = [
        click.argument("spec", type=click.Path(dir_okay=False)),
        click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="result file (HDF5)"),
        click.option("--checkpoint", type=click.Path(dir_okay=False), help="default: OUTPUT.checkpoint"),
        click.option("--checkpoint-period", default=60.0, show_default=True, help="seconds between checkpoints"),
        click.option("--threads", default=1, show_default=True, help="CPU threads for torch"),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N]"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def config_from_options(spec, output, checkpoint, checkpoint_period, threads, device):
    return TrainerConfig(spec, output, checkpoint, checkpoint_period, threads, device)


@click.command()
@trainer_options
def main(**options):
    """Train the networks of one workunit SPEC and write the result file."""
    sys.exit(train_standalone(config_from_options(**options)))


if __name__ == "__main__":
    main()
