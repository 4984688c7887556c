"""``mlds package``: thin click commands over ``mlds.package`` (registered in ``mlds.cli``)."""

import importlib.util
import sys

import click


@click.group()
def package():
    """Build what volunteers download: the frozen trainer (PyInstaller onedir), its signed app versions."""


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


def _fail(exc):
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@package.command("app-version")
@click.option("--platform", "platform_name", required=True, help="BOINC platform name, e.g. x86_64-pc-linux-gnu")
@click.option("--plan-class", default="", help="plan class (directory PLATFORM__PLAN)")
@click.option("--version", required=True, help="X.YY (version_num X*100+YY)")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False), help="the onedir bundle, e.g. dist/mlds-train")
@click.option("--out", "apps_dir", required=True, type=click.Path(file_okay=False), help="the apps/ directory to write into")
@click.option("--app", default="mlds", show_default=True, help="the BOINC app name")
@click.option("--compress-level", default=6, show_default=True, type=click.IntRange(1, 9), help="gzip level of the archive")
@click.option("--wrapper", type=click.Path(exists=True, dir_okay=False),
              help="deploy under BOINC's wrapper (this binary, from samples/wrapper) instead of the sh bootstrap")  # fmt: skip
def app_version(platform_name, plan_class, version, bundle, apps_dir, app, compress_level, wrapper):
    """Lay out APPS/APP/X.YY/PLATFORM[__PLAN]/ for bin/update_versions: bootstrap, archive, version.xml
    (with --wrapper: the wrapper, job.xml, a zip, version.xml)."""
    from mlds.package.appversion import AppVersionError, AppVersionLayout, lay_out
    from mlds.package.wrapped import lay_out_wrapped

    try:
        layout = AppVersionLayout(platform_name, version, app=app, plan_class=plan_class, compress_level=compress_level)
        done = lay_out_wrapped(layout, bundle, wrapper, apps_dir) if wrapper else lay_out(layout, bundle, apps_dir)
    except (AppVersionError, OSError) as exc:
        _fail(exc)
    where = "in every task's slot (the wrapper's unzip_input)" if wrapper else "once per version in the volunteer's project directory"
    click.echo(f"{done.directory}: {len(done.files)} files + version.xml; archive {done.archive_bytes / 1e6:.1f} MB "
               f"({done.archive_seconds:.0f} s), unpacked {done.unpacked_bytes / 1e6:.1f} MB {where}; "
               f"sign it next: mlds package sign")  # fmt: skip


@package.command()
@click.option("--dir", "keys_dir", required=True, type=click.Path(file_okay=False), help="writes code_sign_private (0600) and code_sign_public")
def keygen(keys_dir):
    """A 1024-bit code-signing key pair in BOINC's format (what crypt_prog -genkey 1024 writes)."""
    from mlds.codesign import CodeSignError, write_key_pair

    try:
        private, public = write_key_pair(keys_dir)
    except CodeSignError as exc:
        _fail(exc)
    click.echo(f"{private} (keep it offline), {public} (the project's keys/code_sign_public)")


@package.command()
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False), help="code_sign_private")
@click.option("--apps", "apps_dir", required=True, type=click.Path(exists=True, file_okay=False), help="the apps/ tree (or one version's directory)")
def sign(key_path, apps_dir):
    """Write FILE.sig next to every app file (not version.xml) under APPS, as crypt_prog -sign does."""
    from mlds.codesign import CodeSignError
    from mlds.package.signing import sign_apps

    try:
        signed = sign_apps(key_path, apps_dir)
    except (CodeSignError, OSError) as exc:
        _fail(exc)
    if not signed:
        _fail(f"no app files under {apps_dir}")
    click.echo(f"signed {len(signed)} files under {apps_dir}")


@package.command()
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False), help="code_sign_public")
@click.option("--apps", "apps_dir", required=True, type=click.Path(exists=True, file_okay=False))
def verify(key_path, apps_dir):
    """Check every app file's .sig against the public key (what the client checks); exit 1 on any bad one."""
    from mlds.codesign import CodeSignError
    from mlds.package.signing import verify_apps

    try:
        verdicts = verify_apps(key_path, apps_dir)
    except (CodeSignError, OSError) as exc:
        _fail(exc)
    for path, good in verdicts.items():
        click.echo(f"{'valid' if good else 'INVALID'}: {path}")
    if not verdicts or not all(verdicts.values()):
        sys.exit(1)


@package.command("plan-classes")
@click.option("--kind", "kinds", multiple=True, required=True, type=click.Choice(["mt", "cuda", "amd"]))
@click.option("--max-threads", default=2, show_default=True, type=click.IntRange(1), help="mt: threads per task")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="default: stdout")
def plan_classes(kinds, max_threads, output):
    """A plan_class_spec.xml with the trainer's plan classes (mt, cuda, amd via OpenCL)."""
    from mlds.package.plan_class import KINDS, cpu_mt, plan_classes_xml

    classes = [cpu_mt(max_threads=max_threads, min_ncpus=min(2, max_threads)) if kind == "mt" else KINDS[kind]() for kind in kinds]
    text = plan_classes_xml(classes)
    if output:
        with open(output, "w") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)
