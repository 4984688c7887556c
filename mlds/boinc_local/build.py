"""Build BOINC's real C++ server from a source tarball or checkout, once per source and patch set.

Debian packages no BOINC server, so tests and developers build it from BOINC's own source, which the
project never copies: it is given as a path (the snapshot tarball beside the repository by default,
``MLDS_BOINC_SOURCE`` for a BOINC checkout or another release tarball, ``MLDS_BOINC_PATCHES`` for the
patch directory, empty for none).

A build takes two to three minutes on two cores, so its tree is cached under
``~/.cache/mlds/boinc-server/<key>``, where the key hashes the source, the patches and this module's
recipe. The tree must be built *in place*: ``make_project`` copies programs out of the build tree and
``configure`` records the tree's absolute path (``TOP_BUILD_DIR`` in ``boinc_path_config.py``), so a
tree cannot be built in a temporary directory and then moved. Instead each build gets a directory of
its own under ``builds/`` and is published, when complete, by atomically renaming a symlink
``<key> -> builds/<key>-<random>`` into place. A build that fails (or is killed) is never published
and its directory is removed (now, or by the next build of the same key). An exclusive ``flock`` on
``<key>.lock`` makes a second pytest process wait for the first one's build instead of building again.

Programs are stripped of their debug information (see ``_strip_debug_info``).

BOINC's parallel make has a race: programs in ``lib/`` and ``sched/`` re-enter ``make libboinc.la``
(or ``libsched.la``) while the outer make is still compiling it. The libraries are therefore built one
after another first, then the rest with ``make -j``.
"""

import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlds.boinc_local.deps import require_headers, require_programs
from mlds.boinc_local.errors import BuildError, MissingDependencyError

# Bump when the steps below change: the cache key includes it, so old trees are not reused.
RECIPE_VERSION = "3"
REPO_ROOT = Path(__file__).resolve().parents[2]
TARBALL_NAME = "boinc-server-src-c5c6cb79.tar.gz"
SHARED_SOURCE = Path("shared") / "third_party" / "boinc"
WORKPLACE_SHARED = Path("/work")  # where this project's machines mount shared/ (a clone may live elsewhere)


def default_source_dir():
    """``shared/third_party/boinc`` beside the checkout or above it, else the workplace's mount;
    the first that holds the tarball (the checkout's neighbour when none does, for the message)."""
    candidates = [parent / SHARED_SOURCE for parent in REPO_ROOT.parents] + [WORKPLACE_SHARED / SHARED_SOURCE]
    return next((c for c in candidates if (c / TARBALL_NAME).is_file()), REPO_ROOT.parent / SHARED_SOURCE)


DEFAULT_SOURCE_DIR = default_source_dir()
DEFAULT_TARBALL = DEFAULT_SOURCE_DIR / TARBALL_NAME
DEFAULT_PATCHES = DEFAULT_SOURCE_DIR / "patches"
TREE = "boinc"  # the source tree's name inside a build directory
CONFIGURE = ("./configure", "--disable-client", "--disable-manager", "--enable-server")
SERIAL_TARGETS = (  # (directory, make target or None for the whole directory), in this order
    (".", "svn_version.h"),
    ("api", None),
    ("lib", "libboinc.la"),
    ("lib", "libboinc_crypt.la"),
    ("lib", None),
    ("zip", None),
    ("db", None),
    ("sched", "libsched.la"),
)
WRAPPER_DIR = "samples/wrapper"
FCGI_TARGETS = (("lib", "libboinc_fcgi.la"), ("sched", "libsched_fcgi.la"))

BUILD_PROGRAMS = {
    "autoconf": "autoconf",
    "automake": "automake",
    "libtoolize": "libtool",
    "m4": "m4",
    "pkg-config": "pkg-config",
    "make": "make",
    "g++": "g++",
    "patch": "patch",
    "strip": "binutils",
    "mysql_config": "default-libmysqlclient-dev",
    "curl-config": "libcurl4-openssl-dev",
}
BUILD_HEADERS = {
    "nlohmann/json.hpp": "nlohmann-json3-dev",
    "openssl/ssl.h": "libssl-dev",
    "zlib.h": "zlib1g-dev",
    "zip.h": "libzip-dev",
}


@dataclass(frozen=True)
class BuildConfig:
    """Where the source, patches and cache are; ``jobs``: parallel make jobs for the final step."""

    source: Path
    patches_dir: Path | None
    cache_root: Path
    jobs: int = 2

    @classmethod
    def from_environment(cls, environ=None):
        """Defaults, overridden by ``MLDS_BOINC_SOURCE``, ``MLDS_BOINC_PATCHES`` (empty: no patches),
        ``MLDS_BOINC_CACHE`` and ``MLDS_BOINC_JOBS``."""
        environ = os.environ if environ is None else environ
        patches = environ.get("MLDS_BOINC_PATCHES", str(DEFAULT_PATCHES))
        return cls(
            source=Path(environ.get("MLDS_BOINC_SOURCE") or DEFAULT_TARBALL),
            patches_dir=Path(patches) if patches else None,
            cache_root=Path(environ.get("MLDS_BOINC_CACHE") or default_cache_root(environ)),
            jobs=int(environ.get("MLDS_BOINC_JOBS") or min(os.cpu_count() or 2, 8)),
        )


def default_cache_root(environ):
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlds" / "boinc-server"


def build_boinc_server(source=None, patches_dir=None, cache_root=None, config=None):
    """The path of a built BOINC server tree (``make_project --srcdir``), building it if not cached.

    Arguments left ``None`` come from ``config`` or, without one, ``BuildConfig.from_environment()``;
    ``patches_dir=""`` applies no patches.
    Raises ``MissingDependencyError`` (names the Debian packages) or ``BuildError`` (names the log)."""
    base = config or BuildConfig.from_environment()
    if patches_dir is None:
        patches_dir = base.patches_dir
    config = BuildConfig(
        source=Path(source) if source is not None else base.source,
        patches_dir=Path(patches_dir) if patches_dir else None,  # "": no patches
        cache_root=Path(cache_root) if cache_root is not None else base.cache_root,
        jobs=base.jobs,
    )
    check_source(config.source)
    key = cache_key(config)
    config.cache_root.mkdir(parents=True, exist_ok=True)
    with open(config.cache_root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here for the first one's build
        published = config.cache_root / key
        if not published.exists():
            check_build_dependencies()
            _remove_unpublished(config.cache_root, key)
            _publish(published, _build(config, key))
        return (published / TREE).resolve()


def check_source(source):
    if not source.exists():
        raise MissingDependencyError(
            f"BOINC server source {source}: set MLDS_BOINC_SOURCE to a BOINC checkout or source tarball"
        )


def check_build_dependencies():
    require_programs(BUILD_PROGRAMS)
    require_headers(BUILD_HEADERS)


def patch_files(patches_dir):
    return sorted(patches_dir.glob("*.patch")) if patches_dir and patches_dir.is_dir() else []


def cache_key(config):
    """16 hex digits of sha256 over the recipe version, the source's content and each patch."""
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}\n".encode())
    if config.source.is_dir():
        _hash_directory(digest, config.source)
    else:
        _hash_file(digest, config.source)
    for patch in patch_files(config.patches_dir):
        digest.update(f"patch {patch.name}\n".encode())
        _hash_file(digest, patch)
    return digest.hexdigest()[:16]


def _hash_file(digest, path):
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def _hash_directory(digest, root):
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != ".git")
        for name in sorted(files):
            path = Path(directory, name)
            digest.update(f"file {path.relative_to(root)}\n".encode())
            if not path.is_symlink():
                _hash_file(digest, path)


def _remove_unpublished(cache_root, key):
    """Build directories of ``key`` left by a build that was killed (never published)."""
    for stale in (cache_root / "builds").glob(f"{key}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _publish(published, build_dir):
    link = published.with_name(f".{published.name}.{secrets.token_hex(4)}")
    link.symlink_to(os.path.relpath(build_dir, published.parent))
    os.replace(link, published)


def _build(config, key):
    """Build into a fresh ``builds/<key>-<random>/``; returns it. Removed again if anything fails."""
    build_dir = config.cache_root / "builds" / f"{key}-{secrets.token_hex(4)}"
    build_dir.mkdir(parents=True)
    log_path = build_dir / "build.log"
    failed_log = config.cache_root / f"{key}.failed.log"  # the log outlives the removed directory
    try:
        with open(log_path, "w") as log:
            started = time.monotonic()
            tree = _unpack(config.source, build_dir)
            _apply_patches(patch_files(config.patches_dir), tree, log, failed_log)
            _compile(tree, config.jobs, log, failed_log)
            log.write(f"\n== built in {time.monotonic() - started:.0f} s\n")
    except BaseException as error:
        if log_path.exists():
            shutil.copyfile(log_path, failed_log)
        shutil.rmtree(build_dir, ignore_errors=True)
        if isinstance(error, (BuildError, KeyboardInterrupt, SystemExit)):
            raise
        raise BuildError(f"building BOINC's server failed: {error!r}", failed_log) from error
    failed_log.unlink(missing_ok=True)
    return build_dir


def _unpack(source, build_dir):
    """The source tree as ``build_dir/boinc``, from a tarball (one top directory) or a checkout."""
    tree = build_dir / TREE
    if source.is_dir():
        shutil.copytree(source, tree, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        return tree
    unpacked = build_dir / "unpacked"
    with tarfile.open(source) as archive:
        archive.extractall(unpacked, filter="data")
    (top,) = unpacked.iterdir()
    top.rename(tree)
    unpacked.rmdir()
    return tree


def _apply_patches(patches, tree, log, failed_log):
    for patch in patches:
        try:
            _step(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], tree, log, failed_log)
        except BuildError as error:
            hint = "a source that already has this fix needs MLDS_BOINC_PATCHES set to a directory without it (or empty)"
            raise BuildError(f"{patch.name} does not apply: {hint}", failed_log) from error


def _compile(tree, jobs, log, failed_log):
    _step(["./_autosetup"], tree, log, failed_log)
    _step(list(CONFIGURE), tree, log, failed_log)
    serial = SERIAL_TARGETS + (FCGI_TARGETS if _fcgi_enabled(tree) else ())
    for directory, target in serial:
        _step(["make", f"-j{jobs}", "-C", directory, *([target] if target else [])], tree, log, failed_log)
    _step(["make", f"-j{jobs}"], tree, log, failed_log)
    _step(["make", "-C", WRAPPER_DIR], tree, log, failed_log)  # BOINC's wrapper: a client-side app, 2 s
    _strip_debug_info(tree, log, failed_log)


def wrapper_program(tree):
    """BOINC's ``wrapper`` built in a server tree (``samples/wrapper/wrapper_<suffix>``)."""
    found = [path for path in (Path(tree) / WRAPPER_DIR).glob("wrapper_*") if _is_elf(path) and os.access(path, os.X_OK)]
    if len(found) != 1:
        raise BuildError(f"{Path(tree) / WRAPPER_DIR}: expected one built wrapper, found {len(found)}", Path(tree).parent / "build.log")
    return found[0]


def _strip_debug_info(tree, log, failed_log):
    """``make_project`` copies ~40 programs of ~5 MB debug info each into every project (190 MB a
    project, most of its setup time); without debug info a project is about 25 MB."""
    programs = [path for path in _executables(tree) if _is_elf(path)]
    for start in range(0, len(programs), 100):
        _step(["strip", "--strip-debug", *map(str, programs[start : start + 100])], tree, log, failed_log)


def _executables(tree):
    for directory, _, files in os.walk(tree):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink() and os.access(path, os.X_OK) and not name.endswith((".so", ".o", ".a", ".la")):
                yield path


def _is_elf(path):
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _fcgi_enabled(tree):
    """configure enables the FastCGI libraries when libfcgi-dev is installed (automake conditional)."""
    status = (tree / "config.status").read_text(errors="replace")
    return 'S["ENABLE_FCGI_TRUE"]=""' in status


def _step(command, tree, log, failed_log):
    log.write(f"\n== {' '.join(command)}\n")
    log.flush()
    done = subprocess.run(command, cwd=tree, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(command)} exited {done.returncode} in {tree}", failed_log)


def extract_schema(destination, source=None):
    """BOINC's ``db/schema.sql``, ``constraints.sql`` and ``content.sql`` (what ``make_project``
    loads, in that order) copied into ``destination`` from the source, without building; returns
    ``{name: Path}``. Reads only ``db/`` out of a tarball (well under a second)."""
    source = Path(source) if source is not None else BuildConfig.from_environment().source
    check_source(source)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    wanted = SCHEMA_FILES
    if source.is_dir():
        for name in wanted:
            shutil.copyfile(source / "db" / name, destination / name)
    else:
        _extract_db_files(source, destination, wanted)
    return {name: destination / name for name in wanted}


SCHEMA_FILES = ("schema.sql", "constraints.sql", "content.sql")


def _extract_db_files(tarball, destination, wanted):
    found = set()
    with tarfile.open(tarball) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[1] == "db" and parts[2] in wanted:
                with archive.extractfile(member) as data:
                    (destination / parts[2]).write_bytes(data.read())
                found.add(parts[2])
    missing = set(wanted) - found
    if missing:
        raise MissingDependencyError(f"{', '.join(sorted(missing))} in {tarball} (not a BOINC server source tarball?)")
