"""``mlds package``: thin click commands over ``mlds.package`` (registered in ``mlds.cli``)."""

import importlib.util
import sys

import click


@click.group()
def package():
    """Build what volunteers download: the frozen trainer (PyInstaller onedir)."""


@package.command()
@click.option("--dist", default="dist", show_default=True, type=click.Path(file_okay=False), help="the bundle goes to DIST/mlds-train/")
@click.option("--work", default="build/pyinstaller", show_default=True, type=click.Path(file_okay=False), help="PyInstaller's build directory")
def build(dist, work):
    """Freeze the trainer (boinc_app.main, console script mlds-train) for this platform."""
    from mlds.package.freeze import FreezeConfig, FreezeError, freeze

    if importlib.util.find_spec("PyInstaller") is None:
        click.echo("error: building needs PyInstaller: pip install 'mlds[package]'", err=True)
        sys.exit(1)
    try:
        bundle = freeze(FreezeConfig(dist=dist, work=work), capture=False)
    except FreezeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{bundle.executable}: built in {bundle.build_seconds:.0f} s")
