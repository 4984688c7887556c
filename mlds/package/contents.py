"""What a frozen bundle holds: its Python modules and its size, read from the bundle itself.

The modules are read with PyInstaller's own archive reader (the one ``pyi-archive_viewer`` uses):
the executable carries a PKG archive whose PYZ member holds every frozen module, so the list is
what the volunteer's app can import, not what a build log says. Torch's hook also copies torch's
``.py`` sources next to the bundle (TorchScript reads them); those files count as modules too.
"""

import os

# Top-level packages a volunteer's app must not hold: the server side (work generator, validator,
# assimilator, the mlds CLI and its servers) and what only they use.
SERVER_PACKAGES = ("mlds", "workgen", "validator", "assimilator", "pymysql", "MySQLdb", "cryptography", "selenium", "tests")


def pyz_modules(executable):
    """Names of the modules in the executable's PYZ archive(s)."""
    from PyInstaller.archive.readers import CArchiveReader

    pkg = CArchiveReader(executable)
    names = set()
    for name, (*_, typecode) in pkg.toc.items():
        if typecode == "z":  # PKG_ITEM_PYZ
            names.update(pkg.open_embedded_archive(name).toc)
    return names


def source_modules(bundle_dir):
    """Dotted names of the ``.py``/``.pyc`` files and extension modules stored as files in the bundle."""
    internal = os.path.join(bundle_dir, "_internal")
    names = set()
    for root, _, files in os.walk(internal):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext in (".py", ".pyc") or (ext == ".so" and ".cpython-" in name):
                names.add(_module_name(os.path.relpath(os.path.join(root, stem.split(".")[0]), internal)))
    return names


def _module_name(relative):
    if relative.startswith("python3") and os.sep in relative:  # python3.X/lib-dynload/NAME.cpython-*.so
        return os.path.basename(relative)
    return relative.replace(os.sep, ".").removesuffix(".__init__")


def bundle_modules(bundle_dir, executable):
    return pyz_modules(executable) | source_modules(bundle_dir)


def server_modules(modules):
    """The modules of ``modules`` that belong to a server package, sorted."""
    return sorted(m for m in modules if m.split(".")[0] in SERVER_PACKAGES)


def unpacked_bytes(directory):
    """Bytes of the files under ``directory`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(directory):
        total += sum(os.lstat(os.path.join(root, name)).st_size for name in files)
    return total
