"""The trainer's own entry point (what PyInstaller freezes): ``mlds-train SPEC -o RESULT``.

Three modes, chosen at start:

- **wrapper** when ``--wrapper-fraction-file`` and/or ``--wrapper-checkpoint-file`` is given: a
  task of BOINC's ``wrapper``, which owns the BOINC protocol; the trainer runs as in standalone
  mode and writes those two files for the wrapper (``boinc_app.wrapper_files``). These options
  win over init_data.xml, which the wrapper's slot also holds; from it the trainer takes only
  the volunteer's checkpoint period, unless ``--checkpoint-period`` is given. If the wrapper dies
  (killed: it does not take its child with it), the trainer exits at once, writing nothing: the
  client starts a new wrapper, whose trainer resumes from the last checkpoint.
- **BOINC** when the working directory holds ``init_data.xml`` (a BOINC slot): SPEC and RESULT
  are logical names (``boinc_app.filenames``: ``spec.json``, ``result.h5``); the client decides
  checkpoint period, threads and device, so ``--checkpoint``, ``--checkpoint-period``,
  ``--threads`` and ``--device`` are ignored; the app speaks the shared-memory protocol
  (``boinc_app.boinc_control``) and exits through ``os._exit`` (no interpreter teardown while the
  timer thread or torch's threads run).
- **standalone** otherwise: SIGTERM/SIGINT checkpoint and stop (``boinc_app.standalone``).

Exit codes (mapped here only):

- standalone and wrapper: 0 finished (result written), 2 bad input (spec or checkpoint), 75
  stopped on request after a checkpoint (run the same command again to continue), 1 anything else;
  wrapper: 75 also when the wrapper is gone.
- BOINC: 0 finished (result, then ``boinc_finish_called``); 0 without a finish file after
  ``<quit/>`` or when the client is gone (the client restarts the task later); 0 with a
  ``boinc_temporary_exit`` file (retry after its delay, e.g. the assigned GPU is missing);
  194 after ``<abort/>`` (the client's EXIT_ABORTED_BY_CLIENT, no output); 2 bad input and 1
  anything else, both with a finish file holding the status (a permanent error the client reports
  to the server with stderr).
"""

import functools
import os
import sys
import traceback

import click

from boinc_app.boinc_control import log
from boinc_app.boinc_errors import BoincAppError, TemporaryExit
from boinc_app.boinc_task import boinc_mode_selected, slot_config, start_task
from boinc_app.init_data import INIT_DATA_FILE, InitDataError, read_init_data
from boinc_app.result_file import ResultFileError
from boinc_app.slot_files import write_finish_file, write_temporary_exit
from boinc_app.standalone import StandaloneControl
from boinc_app.trainer import TrainerConfig, run_trainer
from boinc_app.training import CONVERGED, QuitRequested
from boinc_app.version import __version__
from boinc_app.workunit_spec import SpecError
from boinc_app.wrapper_files import WrapperControl, watch_parent

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 75
EXIT_ABORTED = 194  # EXIT_ABORTED_BY_CLIENT
EXIT_BOINC_RESTART = 0  # BOINC: exit 0 without a finish file means "start me again later"
EXIT_TEMPORARY = 0  # BOINC: the boinc_temporary_exit file is read only after an exit 0
HARD_EXIT_CODES = {"abort": EXIT_ABORTED, "client_gone": EXIT_BOINC_RESTART, "failure": EXIT_FAILURE, "parent_gone": EXIT_STOPPED,
                   "wrapper_kill": EXIT_STOPPED}
DEFAULT_CHECKPOINT_PERIOD = 60.0  # standalone, and a wrapper's slot without init_data.xml


def train_standalone(config, make_control=StandaloneControl):
    """Run ``config`` under the standalone control; returns an exit code and prints a summary."""

    def control(write_checkpoint):
        standalone = make_control(write_checkpoint, checkpoint_period=config.checkpoint_period)
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


def train_wrapper(options, fraction_file, checkpoint_file):
    """Standalone training in a wrapper's slot, writing the wrapper's progress files."""
    period = options["checkpoint_period"]
    config = slot_config(
        options["spec"], options["output"], checkpoint=options["checkpoint"],
        checkpoint_period=wrapper_checkpoint_period() if period is None else period,
        threads=options["threads"], device=options["device"],
    )  # fmt: skip
    log(f"wrapper mode: checkpoint every {config.checkpoint_period:g} s")
    parent = os.getppid()
    parent_gone = lambda pid: hard_exit("parent_gone", f"the wrapper (pid {pid}) is gone; exiting without writing")  # noqa: E731
    watch_parent(parent, parent_gone)
    terminate = functools.partial(hard_exit, "wrapper_kill", "killed by the wrapper (SIGTERM): exiting; the last checkpoint stands")
    make_control = functools.partial(WrapperControl, fraction_file=fraction_file, checkpoint_file=checkpoint_file, on_terminate=terminate,
                                     parent=parent, on_parent_gone=parent_gone)  # fmt: skip
    return train_standalone(config, make_control)


def wrapper_checkpoint_period(path=INIT_DATA_FILE):
    """The volunteer's disk interval from the wrapper's init_data.xml; 60 s without a readable one."""
    if not os.path.exists(path):
        return DEFAULT_CHECKPOINT_PERIOD
    try:
        return read_init_data(path).checkpoint_seconds
    except InitDataError as exc:
        log(f"{exc}; checkpointing every {DEFAULT_CHECKPOINT_PERIOD:.0f} s")
        return DEFAULT_CHECKPOINT_PERIOD


def train_boinc(spec, output, slot="."):
    """Run the task of this BOINC slot; returns the exit code (the caller exits with os._exit)."""
    try:
        task = start_task(spec, output, hard_exit, slot)
        state = run_trainer(task.config, task.control.bind)
    except TemporaryExit as exc:
        log(f"temporary exit ({exc.delay} s): {exc.reason}")
        write_temporary_exit(exc.delay, exc.reason, slot=slot)
        return EXIT_TEMPORARY
    except QuitRequested:
        task.control.send_last_status()
        log("stopped on the client's request after the last checkpoint; the client restarts the task")
        return EXIT_BOINC_RESTART
    except (SpecError, ResultFileError) as exc:
        return _permanent_error(EXIT_BAD_INPUT, f"error: {exc}", slot)
    except BoincAppError as exc:
        return _permanent_error(EXIT_FAILURE, f"error: {exc}", slot)
    except Exception:  # noqa: BLE001 - a bug: report it to the project with stderr, do not loop
        return _permanent_error(EXIT_FAILURE, f"error:\n{traceback.format_exc()}", slot)
    task.control.finish()
    converged = sum(1 for n in state.networks if n.status == CONVERGED)
    log(f"finished: {converged}/{len(state.networks)} networks converged")
    write_finish_file(EXIT_OK, slot=slot)
    return EXIT_OK


def _permanent_error(code, message, slot):
    log(message)
    write_finish_file(code, slot=slot)
    return code


def hard_exit(kind, message):
    """Exit at once from any thread (the timer thread's abort, lost client, failure)."""
    log(message)
    exit_now(HARD_EXIT_CODES[kind])


def exit_now(code):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def trainer_options(function):
    options = [
        click.argument("spec", type=click.Path(dir_okay=False)),
        click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="result file (HDF5)"),
        click.option("--checkpoint", type=click.Path(dir_okay=False), help="default: OUTPUT.checkpoint"),
        click.option("--checkpoint-period", type=float, help="seconds between checkpoints [default: 60; under the wrapper: init_data.xml's]"),
        click.option("--threads", default=1, show_default=True, help="CPU threads for torch"),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N]"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def config_from_options(spec, output, checkpoint, checkpoint_period, threads, device):
    period = DEFAULT_CHECKPOINT_PERIOD if checkpoint_period is None else checkpoint_period
    return TrainerConfig(spec, output, checkpoint, period, threads, device)


@click.command()
@click.version_option(__version__, prog_name="mlds-train")  # not from package metadata: a frozen app has none
@trainer_options
@click.option("--wrapper-fraction-file", metavar="NAME", help="wrapper mode: job.xml's <fraction_done_filename>")
@click.option("--wrapper-checkpoint-file", metavar="NAME", help="wrapper mode: job.xml's <checkpoint_filename>")
@click.option("--nthreads", "scheduler_nthreads", hidden=True, type=int, help="added by BOINC's scheduler (plan classes); init_data.xml's ncpus rules")
@click.option("--memory_size_mb", "scheduler_memory_mb", hidden=True, type=float, help="added by BOINC's scheduler for mt plan classes; unused")
def main(wrapper_fraction_file, wrapper_checkpoint_file, scheduler_nthreads, scheduler_memory_mb, **options):
    """Train the networks of one workunit SPEC and write the result file."""
    if wrapper_fraction_file or wrapper_checkpoint_file:
        sys.exit(train_wrapper(options, wrapper_fraction_file, wrapper_checkpoint_file))
    if boinc_mode_selected():
        exit_now(train_boinc(options["spec"], options["output"]))
    sys.exit(train_standalone(config_from_options(**options)))


if __name__ == "__main__":
    main()
