"""``mlds analyze``: thin click commands over ``mlds.analysis`` (registered in ``mlds.cli``).

Options become one frozen config (``Table2Config``, ``TasksConfig``, ``UmapConfig``); the study modules do the work.
scikit-learn, umap-learn and matplotlib are imported only when a command runs, so ``mlds`` works
without the ``analysis`` extra.
"""

import importlib.util
import sys

import click

from mlds.analysis.classifiers import CLASSIFIERS
from mlds.analysis.table2 import CONTROLS, EQUAL_ACCURACIES, EQUAL_EPOCHS, WEIGHT_FEATURES
from mlds.analysis.tasks import TASK_CONTROLS

EXTRA = ("sklearn", "umap", "matplotlib")


def _names(option, known):
    def parse(ctx, param, value):
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise click.BadParameter(f"unknown {', '.join(unknown)}; known: {', '.join(known)}", param_hint=option)
        return names

    return parse


@click.group()
def analyze():
    """Weight-space studies of DS1/DS2 datasets (needs the extra: pip install 'mlds[analysis]')."""
    missing = [m for m in EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        click.echo(f"error: mlds analyze needs {', '.join(missing)}: pip install 'mlds[analysis]'", err=True)
        sys.exit(1)


def _epochs(ctx, param, value):
    try:
        epochs = tuple(int(e) for e in value.split(",") if e.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated epoch numbers", param_hint="--equal-epochs") from None
    if any(e < 1 for e in epochs):
        raise click.BadParameter("epochs count from 1", param_hint="--equal-epochs")
    return epochs


def _accuracies(ctx, param, value):
    try:
        thresholds = tuple(float(a) for a in value.split(",") if a.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated accuracies", param_hint="--equal-accuracies") from None
    if any(not 0 < a <= 1 for a in thresholds):
        raise click.BadParameter("accuracies are fractions in (0, 1]", param_hint="--equal-accuracies")
    return thresholds


_datasets = click.argument("datasets", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
_out = click.option("--out", default="", type=click.Path(dir_okay=False), help="Markdown file to write; the JSON goes beside it")


def _classifier_options(command):
    """The options every classifier study shares: splits, weight feature sets, classifiers."""
    options = [
        click.option("--seeds", default=5, show_default=True, help="80/20 splits, one per seed"),
        click.option("--test-size", default=0.2, show_default=True),
        click.option("--features", default="raw,invariant", show_default=True, callback=_names("--features", WEIGHT_FEATURES),
                     help="weight feature sets"),  # fmt: skip
        click.option("--classifiers", default=",".join(CLASSIFIERS), show_default=True, callback=_names("--classifiers", CLASSIFIERS)),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_study(run, config_of, render, out):
    """Build the config, run the study, print its Markdown and write the files; errors exit 1."""
    from mlds.analysis.report import write_study

    try:
        study = run(config_of())
    except ValueError as exc:  # a StoreError is a ValueError too
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(render(study))
    if out:
        click.echo("wrote " + " and ".join(write_study(study, out)), err=True)


@analyze.command()
@_datasets
@_classifier_options
@click.option("--controls", default=",".join(CONTROLS), show_default=True, callback=_names("--controls", CONTROLS))
@click.option("--machine", "machines", multiple=True, help="only this base name, e.g. SingleDirect (repeatable)")
@click.option("--equal-epochs", default=",".join(map(str, EQUAL_EPOCHS)), show_default=True, callback=_epochs,
              help="snapshot epochs compared at equal training (those the files keep); '' for none")
@click.option("--equal-accuracies", default=",".join(map(str, EQUAL_ACCURACIES)), show_default=True, callback=_accuracies,
              help="validation accuracies compared at equal progress (the first snapshot at or above each); '' for none")
@_out
def table2(datasets, seeds, test_size, features, classifiers, controls, machines, equal_epochs, equal_accuracies, out):
    """MLDS's Table 2 with controls: DS1 XMachine vs DS2 XModified per machine, from DATASET files or releases."""
    from mlds.analysis.report import markdown
    from mlds.analysis.table2 import Table2Config, run_table2

    _run_study(run_table2, lambda: Table2Config(tuple(datasets), seeds, test_size, features, classifiers, controls, tuple(machines),
                                               equal_epochs, equal_accuracies, out), markdown, out)  # fmt: skip


@analyze.command()
@_datasets
@_classifier_options
@click.option("--controls", default=",".join(TASK_CONTROLS), show_default=True, callback=_names("--controls", TASK_CONTROLS))
@click.option("--epoch", default=0, show_default=True, help="the weights after this snapshot epoch (0: final weights)")
@click.option("--min-networks", default=10, show_default=True, help="converged networks a task needs to take part")
@_out
def tasks(datasets, seeds, test_size, features, classifiers, controls, epoch, min_networks, out):
    """Which task trained each network: every task of the DATASET files against the others, from the weights."""
    from mlds.analysis.report import tasks_markdown
    from mlds.analysis.tasks import TasksConfig, run_tasks

    _run_study(run_tasks, lambda: TasksConfig(tuple(datasets), seeds, test_size, features, classifiers, controls, epoch, min_networks, out),
               tasks_markdown, out)  # fmt: skip


@analyze.command()
@_datasets
@click.option("--out", required=True, type=click.Path(file_okay=False), help="directory of the PNG files")
@click.option("--features", default="raw,invariant", show_default=True, callback=_names("--features", WEIGHT_FEATURES))
@click.option("--neighbors", default=15, show_default=True, help="UMAP n_neighbors")
@click.option("--min-dist", default=0.1, show_default=True, help="UMAP min_dist")
@click.option("--seed", default=0, show_default=True)
@click.option("--epoch", default=0, show_default=True, help="the weights after this snapshot epoch (0: final weights)")
def umap(datasets, out, features, neighbors, min_dist, seed, epoch):
    """2-D UMAP projections of the converged networks in DATASET files, coloured by machine and dataset."""
    from mlds.analysis.projection import UmapConfig, run_umap

    try:
        paths = run_umap(UmapConfig(tuple(datasets), out, features, neighbors, min_dist, seed, epoch))
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for path in paths:
        click.echo(path)
